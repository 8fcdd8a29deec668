using Plover.Sync;
using Plover.Tests.Transport;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>
/// The primary's early resume (SyncOptions.EarlyResume): its guest runs again once the pages the sync still reads are
/// copied (the divergent pages after the compare, or the whole union after the bitmaps), while the
/// sync goes on from the copy. What the guest writes from then on belongs to the next sync, the epoch's output still
/// waits for the backup's ack, and an abort after the resume makes the next sync cover every page.
/// </summary>
public class EarlyResumeTests
{
    private static readonly (string, ulong)[] Layout = [("pc.ram", 4UL << 20), ("vga.vram", 1UL << 20)];

    [Theory]
    [InlineData(ResumePoint.Compare)]
    [InlineData(ResumePoint.Bitmaps)]
    public void TheGuestRunsBeforeTheAck_ItsNewWritesWaitForTheNextSync_AndTheEpochsOutputForTheAck(ResumePoint point)
    {
        using var atApply = new ManualResetEventSlim();
        using var go = new ManualResetEventSlim();
        bool armed = false;
        void BackupHook(SyncRole role, SyncStep step)
        {
            if (!armed || step != SyncStep.BeforeApply) return;
            atApply.Set();
            go.Wait(TimeSpan.FromSeconds(20));
        }
        using var pair = new SyncPair(Layout, new SyncOptions { SubBlockBytes = 128, ResumePoint = point }, new SyncOptions { StepHook = BackupHook });
        var work = new Workload(pair, seed: 5);
        work.Run(0.1, 0.5);
        pair.PrimaryNic.GuestSends(7);
        var atCut = pair.PrimaryMemory.Snapshot();

        armed = true;
        var request = new SyncRequest(1, 100);
        var p = pair.Primary.RunAsync(request);
        var b = pair.Backup.RunAsync(request);
        Assert.True(atApply.Wait(TimeSpan.FromSeconds(20)), "the backup never got to its apply");
        // The backup has everything but has not applied it: the primary's guest already runs, its output still held.
        Assert.True(TransportTestKit.WaitUntil(() => pair.PrimaryVm.Running, 5000));
        Assert.DoesNotContain(7, pair.PrimaryNic.Sent);
        // The running guest writes pages (some of them in this sync's union) and sends output of the next epoch.
        for (ulong page = 0; page < 64; page++) pair.PrimaryMemory.Write(0, page, 8, 0xfeed0000UL + page);
        pair.PrimaryNic.GuestSends(8);
        go.Set();
        Assert.True(Task.WaitAll([p, b], TimeSpan.FromSeconds(30)));

        Assert.Equal(SyncOutcome.Completed, p.Result.Outcome);
        Assert.Equal(SyncOutcome.Completed, b.Result.Outcome);
        Assert.True(p.Result.ResumedEarly);
        Assert.False(b.Result.ResumedEarly);
        // after the compare only the divergent pages were copied; after the bitmaps the whole union
        Assert.True(p.Result.DivergentPages > 0 && p.Result.DivergentPages < p.Result.UnionPages, $"{p.Result.DivergentPages} of {p.Result.UnionPages}");
        Assert.Equal(point == ResumePoint.Compare ? p.Result.DivergentPages : p.Result.UnionPages, p.Result.SnapshotPages);
        Assert.True(p.Result.Pause.Guest < p.Result.Pause.Total, $"guest stopped {p.Result.Pause.Guest} us of a {p.Result.Pause.Total} us sync");
        Assert.True(pair.BackupMemory.Matches(atCut), "the backup got pages written after the cut");
        Assert.Contains(7, pair.PrimaryNic.Sent);
        Assert.DoesNotContain(8, pair.PrimaryNic.Sent);

        // The next sync carries what the guest wrote after the resume, and releases that epoch's output.
        var (p2, b2) = pair.Sync(2);
        Assert.Equal(SyncOutcome.Completed, b2.Outcome);
        Assert.True(p2.LocalDirtyPages >= 64, $"{p2.LocalDirtyPages} dirty pages after the resume, the guest wrote 64");
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
        Assert.Contains(8, pair.PrimaryNic.Sent);
    }

    [Theory]
    [InlineData(2048, false)]   // a small union: copied whole at the bitmaps
    [InlineData(10, true)]      // a larger one: the guest waits for the compare, only divergent pages are copied
    public void AutoResumePoint_CopiesASmallUnionWhole_AndOfALargerOneOnlyTheDivergentPages(long smallUnion, bool atCompare)
    {
        using var pair = new SyncPair(Layout, new SyncOptions { SmallUnionPages = smallUnion });
        new Workload(pair, seed: 11).Run(0.05, 0.5);
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.True(p.ResumedEarly);
        Assert.True(p.DivergentPages > 0 && p.DivergentPages < p.UnionPages);
        Assert.Equal(atCompare ? p.DivergentPages : p.UnionPages, p.SnapshotPages);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
    }

    [Fact]
    public void AnAbortAfterTheResume_HoldsTheOutput_AndTheNextSyncCoversEveryPage()
    {
        bool armed = false;
        void BackupHook(SyncRole role, SyncStep step)
        {
            if (armed && step == SyncStep.BeforeApply) throw new IOException("injected: the backup fails before applying");
        }
        using var pair = new SyncPair(Layout, new SyncOptions(), new SyncOptions { StepHook = BackupHook, Log = _ => { } });
        var work = new Workload(pair, seed: 6);
        work.Run(0.05, 0.5);
        Assert.Equal(SyncOutcome.Completed, pair.Sync(1).Backup.Outcome);
        work.Reset();
        work.Run(0.05, 0.5);
        pair.PrimaryNic.GuestSends(9);

        armed = true;
        var (p, b) = pair.Sync(2);
        armed = false;
        Assert.Equal(SyncOutcome.Aborted, p.Outcome);
        Assert.Equal(SyncOutcome.Aborted, b.Outcome);
        Assert.True(p.ResumedEarly);
        Assert.True(pair.PrimaryVm.Running);
        Assert.DoesNotContain(9, pair.PrimaryNic.Sent);

        // The resume cleared the primary's dirt: the next sync marks every page and compares them all.
        pair.Connect();
        var (p3, b3) = pair.Sync(3);
        Assert.Equal(SyncOutcome.Completed, b3.Outcome);
        Assert.Equal(pair.PrimaryMemory.TotalPages, p3.LocalDirtyPages);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
        Assert.Contains(9, pair.PrimaryNic.Sent);
        // ... and only that one: the mark is not kept.
        var (p4, _) = pair.Sync(4);
        Assert.Equal(0UL, p4.LocalDirtyPages);
    }

    [Fact]
    public void ACheckAtTheSyncPoint_KeepsTheGuestStoppedUntilTheAck()
    {
        using var pair = new SyncPair(Layout);
        new Workload(pair, seed: 7).Run(0.05, 0.5);
        bool? runningAtCheck = null;
        pair.Primary.AtNextSyncPoint(_ => runningAtCheck = pair.PrimaryVm.Running);
        var (p, _) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.False(runningAtCheck);
        Assert.False(p.ResumedEarly);
        Assert.True(p.Pause.Guest >= p.Pause.Total, $"guest {p.Pause.Guest} us, sync {p.Pause.Total} us");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TheGuestPause_CountsFromTheReplicasStop_NotFromWhenTheEngineTookTheSyncUp(bool earlyResume)
    {
        using var pair = new SyncPair(Layout, new SyncOptions { EarlyResume = earlyResume });
        new Workload(pair, seed: 9).Run(0.05, 0.5);
        // The replica stopped the VM 50 ms before the engine got to this sync (it waited behind another one).
        var request = new SyncRequest(1, 100) { StoppedAt = System.Diagnostics.Stopwatch.GetTimestamp() - System.Diagnostics.Stopwatch.Frequency / 20 };
        var p = pair.Primary.RunAsync(request);
        var b = pair.Backup.RunAsync(new SyncRequest(1, 100));
        Assert.True(Task.WaitAll([p, b], TimeSpan.FromSeconds(30)));
        Assert.Equal(SyncOutcome.Completed, p.Result.Outcome);
        Assert.Equal(earlyResume, p.Result.ResumedEarly);
        Assert.True(p.Result.Pause.Guest >= 50_000, $"guest pause {p.Result.Pause.Guest} us");
        Assert.True(p.Result.Pause.Guest >= p.Result.Pause.Total || earlyResume);
    }

    [Theory]
    [InlineData(true, 100, ResumePoint.Bitmaps, true)]
    [InlineData(true, 10, ResumePoint.Bitmaps, false)]     // the union is larger than the copy may be
    [InlineData(true, 40, ResumePoint.Bitmaps, false)]
    [InlineData(true, 40, ResumePoint.Compare, true)]      // ... but its divergent pages are not
    [InlineData(true, 10, ResumePoint.Compare, false)]
    [InlineData(false, 100_000, ResumePoint.Compare, false)]
    public void EarlyResume_OnlyWhenOnAndTheCopyFits(bool on, long maxPages, ResumePoint point, bool expected)
    {
        using var pair = new SyncPair(Layout, new SyncOptions { EarlyResume = on, EarlyResumeMaxPages = maxPages, ResumePoint = point });
        var work = new Workload(pair, seed: 8);
        work.Run(0.05, 0.5);   // 64 of 1280 pages, about half of them divergent
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.True(p.UnionPages > 40 && p.DivergentPages is > 10 and <= 40, $"union {p.UnionPages}, divergent {p.DivergentPages}");
        Assert.Equal(expected, p.ResumedEarly);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
        if (!expected) Assert.True(p.Pause.Guest >= p.Pause.Total, $"guest {p.Pause.Guest} us, sync {p.Pause.Total} us");
    }
}
