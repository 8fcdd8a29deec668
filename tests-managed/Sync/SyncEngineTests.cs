using Plover.Sync;
using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Sync;

public class SyncEngineTests(ITestOutputHelper output)
{
    private static readonly (string, ulong)[] SmallLayout = [("pc.ram", 16UL << 20), ("vga.vram", (2UL << 20) + 3 * 4096), ("rom", 12 * 1024)];

    private static void AssertIdentical(SyncPair pair)
    {
        var diff = pair.PrimaryMemory.FirstDifference(pair.BackupMemory);
        Assert.True(diff is null, $"memories differ at block {diff?.Block} page {diff?.Page}");
        Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
    }

    [Fact]
    public void RandomRounds_LeaveMemoriesIdentical_AndSendExactlyTheDivergentPages()
    {
        using var pair = new SyncPair(SmallLayout);
        var work = new Workload(pair, seed: 7);
        double[] fractions = [0.01, 0.05, 0.2, 0.002, 0.1];
        double[] shares = [0.25, 0.0, 0.5, 1.0, 0.1];
        for (int round = 0; round < fractions.Length; round++)
        {
            ulong epoch = (ulong)round + 1;
            pair.PrimaryVm.DeviceState = Enumerable.Range(0, 1000 + round).Select(i => (byte)(i * (round + 3))).ToArray();
            pair.PrimaryNic.GuestSends(round);
            pair.BackupNic.GuestSends(100 + round);
            work.Run(fractions[round], shares[round]);
            int expected = work.CountDivergent();
            int dirty = work.DirtyPages;
            ulong ramBefore = pair.BackupVm.RamUpdatedBytes;

            var (p, b) = pair.Sync(epoch);
            output.WriteLine(p.ToString());
            output.WriteLine(b.ToString());

            Assert.Equal(SyncOutcome.Completed, p.Outcome);
            Assert.Equal(SyncOutcome.Completed, b.Outcome);
            Assert.Equal((ulong)dirty, p.UnionPages);
            Assert.Equal(p.UnionPages, b.UnionPages);
            Assert.Equal((ulong)expected, p.DivergentPages);
            Assert.Equal((ulong)expected, b.DivergentPages);
            Assert.Equal((ulong)dirty - (ulong)expected, p.IdenticalPages);
            Assert.Equal((ulong)expected * 4096, pair.BackupVm.RamUpdatedBytes - ramBefore);
            Assert.Equal(p.Wire.Total, b.Wire.Total);   // both sides count the same frames
            AssertIdentical(pair);
            // primary output of this epoch released after the ack; the backup's own output discarded
            Assert.Contains(round, pair.PrimaryNic.Sent);
            Assert.Contains(100 + round, pair.BackupNic.Dropped);
            Assert.True(pair.PrimaryVm.Running && pair.BackupVm.Running);
            work.Reset();
        }
        Assert.Equal(5, pair.Primary.Metrics.Totals.Completed);
        Assert.Empty(pair.BackupNic.Sent);
    }

    [Fact]
    public void PageBatchesAndHashFrames_SplitCorrectly()
    {
        var options = new SyncOptions { PagesPerFrame = 7, HashesPerFrame = 50 };
        using var pair = new SyncPair(SmallLayout, options, options);
        var work = new Workload(pair, seed: 11);
        work.Run(0.03, 0.4);
        int expected = work.CountDivergent();
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal((ulong)expected, b.DivergentPages);
        AssertIdentical(pair);
    }

    [Fact]
    public void FullSync_FindsDifferencesTheDirtyLogNeverSaw()
    {
        using var pair = new SyncPair(SmallLayout);
        var rng = new Random(3);
        var differing = new HashSet<(int, ulong)>();
        var blocks = pair.BackupMemory.Blocks;
        for (int i = 0; i < 300; i++)
        {
            int block = rng.Next(blocks.Count);
            ulong page = (ulong)rng.NextInt64((long)blocks[block].Pages);
            pair.BackupMemory.Page(block, page)[rng.Next(4096)] ^= 0x5A;   // no dirt logged: a stale backup
            differing.Add((block, page));
        }
        var (p, b) = pair.Sync(1, full: true);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(pair.PrimaryMemory.TotalPages, p.UnionPages);
        Assert.Equal((ulong)differing.Count, p.DivergentPages);
        AssertIdentical(pair);
    }

    /// <summary>The backup compares the primary's input digest at the cut with its own: on a mismatch the dirty pages
    /// need not cover the difference, so it compares every page (and reports it).</summary>
    [Fact]
    public void DivergedInputs_MakeTheBackupCompareEveryPage()
    {
        using var pair = new SyncPair(SmallLayout);
        pair.BackupMemory.Page(0, 3)[17] ^= 0x5A;   // what a different input did, with no dirt logged
        var p = pair.Primary.RunAsync(new SyncRequest(1, 100, InputDigest: 0x1111));
        var b = pair.Backup.RunAsync(new SyncRequest(1, 100, InputDigest: 0x2222));
        Assert.True(Task.WaitAll([p, b], TimeSpan.FromSeconds(60)));
        Assert.Equal(SyncOutcome.Completed, b.Result.Outcome);
        Assert.True(b.Result.InputsDiverged);
        Assert.Equal(0x1111UL, b.Result.InputDigest);
        Assert.False(p.Result.InputsDiverged);
        Assert.Equal(pair.PrimaryMemory.TotalPages, p.Result.UnionPages);
        Assert.Equal(1UL, p.Result.DivergentPages);
        Assert.Contains(pair.Logs, l => l.Contains("INPUTS DIVERGED"));
        AssertIdentical(pair);
    }

    /// <summary>A full sync (a join) stages up to all of guest RAM; the backup gives that memory back afterwards.</summary>
    [Fact]
    public void AFullSyncGivesItsStagingMemoryBack()
    {
        using var pair = new SyncPair(SmallLayout);
        pair.BackupMemory.Page(0, 3)[17] ^= 0x5A;
        var (_, b) = pair.Sync(1, full: true);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(0UL, pair.Backup.StagingBytes);
        pair.PrimaryMemory.Write(0, 5, 1, 0xABCDUL);   // a guest write: logged dirty
        (_, b) = pair.Sync(2);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.InRange(pair.Backup.StagingBytes, 1UL, 64UL * 4096);   // an ordinary sync keeps what its union needs
        AssertIdentical(pair);
    }

    [Fact]
    public void Checkpoint_SendsEveryPageThePrimaryDirtied_AndNoneOfTheBackups()
    {
        var options = new SyncOptions { Checkpoint = true };
        using var pair = new SyncPair(SmallLayout, options, options);
        for (ulong page = 0; page < 40; page++)
        {
            pair.PrimaryMemory.Write(0, page, 8, 0xC0FFEE + page);
            if (page % 2 == 0) pair.PrimaryMemory.Write(0, page + 100, 16, page);   // same bytes on both: still sent
            if (page % 2 == 0) pair.BackupMemory.Write(0, page + 100, 16, page);
        }
        pair.BackupMemory.Touch(0, 300);   // a passive backup's bitmap holds only what its apply wrote: not sent
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(60UL, p.UnionPages);
        Assert.Equal(60UL, p.DivergentPages);
        Assert.Equal(0UL, b.LocalDirtyPages);
        Assert.Equal(0, p.Wire.Hashes + b.Wire.Hashes);
        Assert.True(p.Checkpoint && b.Checkpoint);
        AssertIdentical(pair);
    }

    [Fact]
    public void Checkpoint_OnOneSideOnly_AbortsWithTheReason()
    {
        using var pair = new SyncPair(SmallLayout, new SyncOptions { Checkpoint = true }, new SyncOptions());
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Aborted, p.Outcome);
        Assert.Equal(SyncOutcome.Aborted, b.Outcome);
        Assert.Contains("sync.mode", p.Error + b.Error);
    }

    [Fact]
    public void SyncWithNoDirt_SendsOnlyBitmapsAndDeviceState()
    {
        using var pair = new SyncPair(SmallLayout);
        pair.PrimaryVm.DeviceState = new byte[5000];
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(0UL, p.UnionPages);
        Assert.Equal(0, p.Wire.Pages + p.Wire.Hashes);
        Assert.True(p.Wire.Bitmaps < 200, $"empty bitmaps took {p.Wire.Bitmaps} bytes");
        AssertIdentical(pair);
    }

    [Fact]
    public void EpochMismatch_AbortsBothWithTheReason()
    {
        using var pair = new SyncPair(SmallLayout);
        var p = pair.Primary.RunAsync(new SyncRequest(5, 500));
        var b = pair.Backup.RunAsync(new SyncRequest(6, 600));
        Assert.Equal(SyncOutcome.Aborted, p.Result.Outcome);
        Assert.Equal(SyncOutcome.Aborted, b.Result.Outcome);
        Assert.Contains("e6", p.Result.Error);
        Assert.True(pair.PrimaryVm.Running && pair.BackupVm.Running);
        Assert.Null(pair.Primary.Connection);
    }

    [Fact]
    public void OneGiBEach_SyncsToIdentical()
    {
        var options = new SyncOptions { Timeout = TimeSpan.FromSeconds(30) };
        using var pair = new SyncPair([("pc.ram", 1UL << 30)], options, options);
        var work = new Workload(pair, seed: 42);
        work.Run(0.01, 0.25);
        int expected = work.CountDivergent();
        var (p, b) = pair.Sync(1);
        output.WriteLine(p.ToString());
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal((ulong)expected, p.DivergentPages);
        AssertIdentical(pair);

    }

    /// <summary>A backup that stopped at an older cut than the primary's (the primary skipped or aborted it) ends
    /// that sync as superseded without closing the link, and its sync of the primary's cut completes on the
    /// SyncBegin it kept. (Closing the link instead aborted the primary's sync too, and a lagging backup never
    /// caught up: the replica simulation's livelock.)</summary>
    [Fact]
    public void ABackupAtAnOlderCut_IsSuperseded_AndTakesThePrimarysSyncNext()
    {
        using var pair = new SyncPair(SmallLayout);
        var work = new Workload(pair, seed: 5);
        work.Run(0.01, 0.5);
        var primary = pair.Primary.RunAsync(new SyncRequest(3, 30));
        var old = pair.Backup.RunAsync(new SyncRequest(2, 20)).Result;
        Assert.Equal(SyncOutcome.Aborted, old.Outcome);
        Assert.StartsWith("superseded: the primary runs sync e3 at log index 30", old.Error);
        Assert.False(pair.Backup.Connection!.IsClosed);
        var current = pair.Backup.RunAsync(new SyncRequest(3, 30));
        Assert.True(Task.WaitAll([primary, current], TimeSpan.FromSeconds(60)), "sync did not finish");
        Assert.Equal(SyncOutcome.Completed, primary.Result.Outcome);
        Assert.Equal(SyncOutcome.Completed, current.Result.Outcome);
        AssertIdentical(pair);
    }
}

public class SyncGuardIntegrationTests
{
    private static readonly (string, ulong)[] Layout = [("pc.ram", 2UL << 20)];

    [Fact]
    public void PrimaryOutput_IsHeldWhileWaitingForTheAck_AndReleasedAfterResume()
    {
        SyncPair? pair = null;
        bool? sentWhileWaiting = null, runningWhileWaiting = null;
        void Hook(SyncRole role, SyncStep step)
        {
            if (role != SyncRole.Primary || step != SyncStep.BeforeApply) return;
            sentWhileWaiting = pair!.PrimaryNic.Sent.Contains(7);
            runningWhileWaiting = pair.PrimaryVm.Running;
        }
        pair = new SyncPair(Layout, new SyncOptions { StepHook = Hook, EarlyResume = false });   // EarlyResumeTests: with it
        using var _ = pair;
        pair.PrimaryNic.GuestSends(7);
        new Workload(pair, 1).Run(0.05, 0.5);
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.False(sentWhileWaiting);
        Assert.False(runningWhileWaiting);
        Assert.Contains(7, pair.PrimaryNic.Sent);
        // the release happened on the main thread after vm_start
        var calls = pair.PrimaryVm.Calls;
        Assert.Equal("start", calls[^1]);
    }

    [Fact]
    public void TheBackupAcksOnceApplied_AndResumesAfterwards()
    {
        SyncPair? pair = null;
        bool? runningAtAck = null;
        int loadsAtAck = -1;
        void Hook(SyncRole role, SyncStep step)
        {
            if (step != SyncStep.BeforeAck) return;
            runningAtAck = pair!.BackupVm.Running;
            loadsAtAck = pair.BackupVm.DeviceStateLoads;
        }
        pair = new SyncPair(Layout, backupOptions: new SyncOptions { StepHook = Hook });
        using var _ = pair;
        new Workload(pair, 3).Run(0.05, 0.5);
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.False(runningAtAck);      // the primary's output waits for the ack, not for this VM's vm_start
        Assert.Equal(1, loadsAtAck);     // ... but the state is in place before it
        Assert.True(pair.BackupVm.Running);
        Assert.Equal("start", pair.BackupVm.Calls[^1]);
    }

    [Fact]
    public void DeviceStateRefused_AfterRamWasWritten_MarksTheBackupInvalid_UntilTheNextSync()
    {
        using var pair = new SyncPair(Layout);
        var work = new Workload(pair, 2);
        work.Run(0.05, 0.5);
        pair.BackupVm.FailDeviceLoad = true;
        pair.BackupNic.GuestSends(1);
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Aborted, b.Outcome);
        Assert.Equal(SyncOutcome.Aborted, p.Outcome);
        Assert.Contains("INVALID", b.Error);
        Assert.True(pair.Backup.StateInvalid);
        Assert.Empty(pair.BackupNic.Dropped);      // state 1 was never applied: its own output stays held

        pair.BackupVm.FailDeviceLoad = false;
        pair.Connect();
        work.Run(0.01, 0.5);
        (p, b) = pair.Sync(2);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.False(pair.Backup.StateInvalid);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
    }
}
