using Plover.Sync;
using Plover.Tests.Transport.Ucx;
using Plover.Transport.Ucx;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>
/// A replica dies at every step of the protocol (its sync connection closes under it). Whatever the step, the
/// backup ends with exactly its old state or exactly the new one, never a mix; a primary that loses its backup
/// resumes without releasing that epoch's output and without clearing its dirt; and the next sync after a
/// reconnect makes the replicas identical again.
/// </summary>
public class SyncCrashTests
{
    private static readonly (string, ulong)[] Layout = [("pc.ram", 4UL << 20), ("vga.vram", 1UL << 20)];

    public static TheoryData<SyncRole, SyncStep, int> Crashes()
    {
        var data = new TheoryData<SyncRole, SyncStep, int>();
        foreach (var step in new[] { SyncStep.Stopped, SyncStep.BitmapsExchanged, SyncStep.Hashed, SyncStep.BeforeDeviceState, SyncStep.BeforeApply })
        {
            data.Add(SyncRole.Primary, step, 1);
            data.Add(SyncRole.Backup, step, 1);
        }
        data.Add(SyncRole.Primary, SyncStep.HashChunk, 2);   // during the hashes
        data.Add(SyncRole.Backup, SyncStep.HashChunk, 2);
        data.Add(SyncRole.Primary, SyncStep.PageBatch, 3);   // mid page transfer
        data.Add(SyncRole.Backup, SyncStep.PageBatch, 3);
        data.Add(SyncRole.Backup, SyncStep.BeforeAck, 1);    // applied, ack never sent
        foreach (var role in new[] { SyncRole.Primary, SyncRole.Backup })
        {
            // sub-block mode (the default; chunks of 16 divergent pages, 64 / (4096 / B) pages per sub-block hash frame)
            data.Add(role, SyncStep.DivergentListed, 1);     // the divergent list sent / received
            data.Add(role, SyncStep.SubBlocksHashed, 1);     // own sub-block hashes of the first chunk
            data.Add(role, SyncStep.SubBlockHashChunk, 2);   // during the first chunk's sub-block hashes
            data.Add(role, SyncStep.SubBlocksHashed, 2);     // the second chunk, after the first one's sub-blocks
            data.Add(role, SyncStep.SubBlockHashChunk, 12);  // during the second chunk's (2 pages per frame at 128 bytes)
        }
        data.Add(SyncRole.Backup, SyncStep.Applying, 1);     // half applied: torn, and the engine says so
        return data;
    }

    /// <summary>The same crashes where pages travel whole (SubBlockBytes 0, as in full syncs).</summary>
    public static TheoryData<SyncRole, SyncStep, int, int> WholePageCrashes()
    {
        var data = new TheoryData<SyncRole, SyncStep, int, int>();
        foreach (var role in new[] { SyncRole.Primary, SyncRole.Backup })
        {
            data.Add(role, SyncStep.PageBatch, 3, 0);
            data.Add(role, SyncStep.BeforeDeviceState, 1, 0);
            data.Add(role, SyncStep.BeforeApply, 1, 0);
        }
        return data;
    }

    /// <summary>The primary's guest resumes early by default (the crashes above happen after it resumed, but for
    /// Stopped and BitmapsExchanged); here it waits for the ack as it does with EarlyResume off or a large union.</summary>
    public static TheoryData<SyncRole, SyncStep, int, int, bool> CrashesWithoutEarlyResume()
    {
        var data = new TheoryData<SyncRole, SyncStep, int, int, bool>();
        foreach (var role in new[] { SyncRole.Primary, SyncRole.Backup })
        {
            data.Add(role, SyncStep.Hashed, 1, SyncOptions.DefaultSubBlockBytes, false);
            data.Add(role, SyncStep.PageBatch, 3, SyncOptions.DefaultSubBlockBytes, false);
            data.Add(role, SyncStep.BeforeApply, 1, SyncOptions.DefaultSubBlockBytes, false);
        }
        data.Add(SyncRole.Primary, SyncStep.ResumedEarly, 1, SyncOptions.DefaultSubBlockBytes, true);   // just resumed
        return data;
    }

    /// <summary>The primary's guest resuming after the bitmaps (the union copied) or after the compare (the default:
    /// only the divergent pages copied), and the backup applying on one core or on all (the default).</summary>
    public static TheoryData<SyncRole, SyncStep, int, int, bool, ResumePoint, bool> CrashesByResumePointAndApply()
    {
        var data = new TheoryData<SyncRole, SyncStep, int, int, bool, ResumePoint, bool>();
        foreach (var point in new[] { ResumePoint.Bitmaps, ResumePoint.Compare })
            foreach (bool parallel in new[] { false, true })
            {
                void Add(SyncRole role, SyncStep step, int occurrence) =>
                    data.Add(role, step, occurrence, SyncOptions.DefaultSubBlockBytes, true, point, parallel);
                Add(SyncRole.Primary, SyncStep.Hashed, 1);        // before (compare) or after (bitmaps) the resume
                Add(SyncRole.Primary, SyncStep.ResumedEarly, 1);  // just resumed from the copy
                Add(SyncRole.Primary, SyncStep.PageBatch, 3);     // sending from the copy
                Add(SyncRole.Backup, SyncStep.PageBatch, 3);
                Add(SyncRole.Backup, SyncStep.Applying, 1);       // half applied: torn
                Add(SyncRole.Backup, SyncStep.BeforeAck, 1);      // applied, ack never sent
            }
        return data;
    }

    [Theory]
    [MemberData(nameof(Crashes))]
    [MemberData(nameof(WholePageCrashes))]
    [MemberData(nameof(CrashesWithoutEarlyResume))]
    [MemberData(nameof(CrashesByResumePointAndApply))]
    public void CrashAtStep_LeavesBackupOldOrNew_NeverMixed(SyncRole victim, SyncStep step, int occurrence, int subBlockBytes = SyncOptions.DefaultSubBlockBytes,
                                                           bool earlyResume = true, ResumePoint resumePoint = ResumePoint.Compare, bool parallelApply = true) =>
        Crash(victim, step, occurrence, subBlockBytes, earlyResume, resumePoint, parallelApply, ucx: null);

    /// <summary>UCX page puts (over UCX's TCP transport here): the backup offers its staging buffer after the bitmaps,
    /// the primary puts each batch there, flushes, and then sends its completion. Crashes around the new steps: the
    /// offer, between a batch's puts and its completion (PagesPut), mid transfer, before and during the apply.</summary>
    public static TheoryData<SyncRole, SyncStep, int, int> PutCrashes()
    {
        var data = new TheoryData<SyncRole, SyncStep, int, int>();
        foreach (int subBlockBytes in new[] { 0, SyncOptions.DefaultSubBlockBytes })
        {
            data.Add(SyncRole.Primary, SyncStep.PagesPut, 1, subBlockBytes);   // first batch put, no completion sent
            data.Add(SyncRole.Primary, SyncStep.PagesPut, 2, subBlockBytes);   // one batch complete, the second only put
            data.Add(SyncRole.Primary, SyncStep.PageBatch, 3, subBlockBytes);
            data.Add(SyncRole.Backup, SyncStep.PageBatch, 3, subBlockBytes);   // mid transfer: some batches verified
            data.Add(SyncRole.Backup, SyncStep.Hashed, 1, subBlockBytes);      // the staging offer sent, hashes not yet
            data.Add(SyncRole.Primary, SyncStep.Hashed, 1, subBlockBytes);     // the offer not yet read
            data.Add(SyncRole.Backup, SyncStep.BeforeApply, 1, subBlockBytes);
            data.Add(SyncRole.Primary, SyncStep.BeforeApply, 1, subBlockBytes);
            data.Add(SyncRole.Backup, SyncStep.Applying, 1, subBlockBytes);    // torn
            data.Add(SyncRole.Backup, SyncStep.BeforeAck, 1, subBlockBytes);
        }
        return data;
    }

    [UcxTheory]
    [MemberData(nameof(PutCrashes))]
    public void CrashAtStep_WithPagePuts_LeavesBackupOldOrNew_NeverMixed(SyncRole victim, SyncStep step, int occurrence, int subBlockBytes) =>
        Crash(victim, step, occurrence, subBlockBytes, earlyResume: true, ResumePoint.Compare, parallelApply: true, ucx: UcxSettings.OverTcpPagePuts);

    private static void Crash(SyncRole victim, SyncStep step, int occurrence, int subBlockBytes, bool earlyResume, ResumePoint resumePoint,
                              bool parallelApply, UcxSettings? ucx)
    {
        var crash = new InjectedCrash(victim, step, occurrence);
        SyncOptions Options() => new()
        {
            PagesPerFrame = 8, PutPagesPerBatch = 8, HashesPerFrame = 64, Timeout = TimeSpan.FromSeconds(5), StepHook = crash.Hook,
            SubBlockBytes = subBlockBytes, SubBlockChunkPages = 16, EarlyResume = earlyResume, ResumePoint = resumePoint,
            ParallelApply = parallelApply,
        };
        var pair = crash.Pair = new SyncPair(Layout, Options(), Options(), ucx: ucx);
        using var _ = pair;
        var work = new Workload(pair, seed: (int)step * 10 + (int)victim);

        // a first, clean sync so the backup has a known "old" state with history
        work.Run(0.05, 0.3);
        Assert.Equal(SyncOutcome.Completed, pair.Sync(1).Backup.Outcome);
        work.Reset();

        work.Run(0.1, 0.5);
        pair.PrimaryVm.DeviceState = [9, 9, 9, 9];
        pair.PrimaryNic.GuestSends(42);
        var oldBackup = pair.BackupMemory.Snapshot();
        var oldDevice = pair.BackupVm.DeviceState;
        var primaryBefore = pair.PrimaryMemory.Snapshot();
        int divergent = work.CountDivergent();
        Assert.True(divergent > 24, $"need several page batches, have {divergent} divergent pages");

        crash.Armed = true;
        var (p, b) = pair.Sync(2);
        crash.Armed = false;
        Assert.Equal(occurrence, crash.Seen);
        Assert.Equal(SyncOutcome.Aborted, victim == SyncRole.Primary ? p.Outcome : b.Outcome);
        if (ucx is { PagePuts: true } && step is SyncStep.PagesPut or SyncStep.PageBatch or SyncStep.BeforeApply or SyncStep.Applying or SyncStep.BeforeAck)
            Assert.True(p.Puts > 0, "the pages did not go by puts");

        bool everythingSent = victim == SyncRole.Primary && step == SyncStep.BeforeApply;
        bool applied = everythingSent || (victim == SyncRole.Backup && step == SyncStep.BeforeAck);
        bool torn = victim == SyncRole.Backup && step == SyncStep.Applying;
        if (torn)
        {
            // neither old nor new: a replica in this state must not be promoted until a sync completes
            Assert.True(pair.Backup.StateInvalid);
            Assert.False(pair.BackupMemory.Matches(oldBackup));
            Assert.NotNull(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
        }
        else if (applied)
        {
            Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
            Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
        }
        else
        {
            Assert.True(pair.BackupMemory.Matches(oldBackup), "the backup's memory changed in an aborted sync");
            Assert.Same(oldDevice, pair.BackupVm.DeviceState);
            Assert.Equal(SyncOutcome.Aborted, b.Outcome);
        }
        // the primary never changes its own memory, resumes, and holds this epoch's output (no ack)
        Assert.True(pair.PrimaryMemory.Matches(primaryBefore));
        Assert.True(pair.PrimaryVm.Running);
        Assert.True(pair.BackupVm.Running);
        Assert.Equal(SyncOutcome.Aborted, p.Outcome);
        Assert.DoesNotContain(42, pair.PrimaryNic.Sent);
        Assert.Null(pair.Primary.Connection);

        // a reconnect and the next sync repair everything: neither side cleared its dirt on the abort (a primary
        // that had resumed early had, and marks every page instead)
        pair.Connect();
        work.Run(0.01, 0.5);
        var (p3, b3) = pair.Sync(3);
        Assert.Equal(SyncOutcome.Completed, p3.Outcome);
        Assert.Equal(SyncOutcome.Completed, b3.Outcome);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
        Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
        Assert.Contains(42, pair.PrimaryNic.Sent);   // released with the next acked sync
    }

    /// <summary>A put that arrives garbled (here: bytes of the first batch's staging slots changed after the primary's
    /// flush, as a faulty or hostile writer on the fabric would), and a remote key that does not unpack on the
    /// primary: the sync aborts on both sides with the reason, the backup keeps the previous sync point, and after a
    /// reconnect the next sync completes.</summary>
    [UcxTheory]
    [InlineData("garbled", 0)]
    [InlineData("garbled", SyncOptions.DefaultSubBlockBytes)]
    [InlineData("bad key", 0)]
    [InlineData("bad key", SyncOptions.DefaultSubBlockBytes)]
    public unsafe void PutFault_LeavesBackupAtPreviousSyncPoint(string fault, int subBlockBytes)
    {
        SyncPair? pair = null;
        bool armed = false;
        int garbled = 0;
        void Hook(SyncRole role, SyncStep at)
        {
            if (!armed || fault != "garbled" || role != SyncRole.Primary || at != SyncStep.PagesPut || garbled > 0) return;
            garbled++;
            byte* staged = pair!.Backup.StagingPointer;   // the first batch's data, put and flushed, completion not yet sent
            for (int i = 0; i < 64; i++) staged[i] ^= 0x5a;
        }
        SyncOptions Options() => new()
        {
            PagesPerFrame = 8, PutPagesPerBatch = 8, HashesPerFrame = 64, Timeout = TimeSpan.FromSeconds(5), StepHook = Hook, SubBlockBytes = subBlockBytes,
            SubBlockChunkPages = 16, Log = _ => { },
        };
        pair = new SyncPair(Layout, Options(), Options(), ucx: UcxSettings.OverTcpPagePuts);
        using var _ = pair;
        var work = new Workload(pair, seed: 77);
        work.Run(0.05, 0.3);
        Assert.Equal(SyncOutcome.Completed, pair.Sync(1).Backup.Outcome);
        work.Reset();

        work.Run(0.1, 0.5);
        pair.PrimaryVm.DeviceState = [7, 7, 7];
        pair.PrimaryNic.GuestSends(43);
        var oldBackup = pair.BackupMemory.Snapshot();
        var oldDevice = pair.BackupVm.DeviceState;
        if (fault == "bad key") pair.Primary.Connection!.RefuseStagingKey = true;
        armed = true;
        var (p, b) = pair.Sync(2);
        armed = false;

        Assert.Equal(SyncOutcome.Aborted, p.Outcome);
        Assert.Equal(SyncOutcome.Aborted, b.Outcome);
        if (fault == "garbled")
        {
            Assert.Equal(1, garbled);
            Assert.Contains("does not match the primary's hash", b.Error);
        }
        else
        {
            Assert.Contains("staging key does not unpack", p.Error);
            Assert.Equal(0UL, p.Puts);
        }
        Assert.True(pair.BackupMemory.Matches(oldBackup), "the backup's memory changed in an aborted sync");
        Assert.Same(oldDevice, pair.BackupVm.DeviceState);
        Assert.False(pair.Backup.StateInvalid);
        Assert.True(pair.PrimaryVm.Running && pair.BackupVm.Running);
        Assert.DoesNotContain(43, pair.PrimaryNic.Sent);

        pair.Backup.Connection?.Dispose();
        pair.Connect();
        work.Run(0.01, 0.5);
        var (p3, b3) = pair.Sync(3);
        Assert.Equal(SyncOutcome.Completed, p3.Outcome);
        Assert.Equal(SyncOutcome.Completed, b3.Outcome);
        Assert.True(p3.Puts > 0);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
        Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
        Assert.Contains(43, pair.PrimaryNic.Sent);
    }

    [Fact]
    public void StalledPrimary_BackupTimesOutAndKeepsItsState()
    {
        SyncPair? pair = null;
        bool armed = false;
        var release = new ManualResetEventSlim();
        void Hook(SyncRole role, SyncStep at)
        {
            if (armed && role == SyncRole.Primary && at == SyncStep.PageBatch) release.Wait(TimeSpan.FromSeconds(5));
        }
        var options = new SyncOptions { PagesPerFrame = 8, Timeout = TimeSpan.FromMilliseconds(400), StepHook = Hook };
        pair = new SyncPair(Layout, options, options);
        using var _ = pair;
        var work = new Workload(pair, seed: 99);
        work.Run(0.05, 0.5);
        var old = pair.BackupMemory.Snapshot();
        armed = true;
        var p = pair.Primary.RunAsync(new SyncRequest(1, 100));
        var b = pair.Backup.RunAsync(new SyncRequest(1, 100));
        Assert.Equal(SyncOutcome.Aborted, b.Result.Outcome);
        Assert.Contains("timed out", b.Result.Error);
        release.Set();
        Assert.Equal(SyncOutcome.Aborted, p.Result.Outcome);
        Assert.True(pair.BackupMemory.Matches(old));
    }

    [Fact]
    public void StalledBackup_PrimarySendTimesOut_AndResumesUnprotected()
    {
        SyncPair? pair = null;
        bool armed = false;
        var release = new ManualResetEventSlim();
        void Hook(SyncRole role, SyncStep at)
        {
            if (armed && role == SyncRole.Backup && at == SyncStep.PageBatch) release.Wait(TimeSpan.FromSeconds(10));
        }
        // whole pages: the transfer must be far larger than the socket buffers (sub-blocks of one word would fit)
        var options = new SyncOptions { Timeout = TimeSpan.FromMilliseconds(500), StepHook = Hook, SubBlockBytes = 0 };
        pair = new SyncPair([("pc.ram", 128UL << 20)], options, options);
        using var _ = pair;
        new Workload(pair, seed: 5).Run(0.3, 1.0);     // ~33 MiB of divergent pages: far more than the socket buffers hold
        var old = pair.BackupMemory.Snapshot();
        pair.PrimaryNic.GuestSends(1);
        armed = true;
        var p = pair.Primary.RunAsync(new SyncRequest(1, 100));
        var b = pair.Backup.RunAsync(new SyncRequest(1, 100));
        Assert.True(p.Wait(TimeSpan.FromSeconds(8)), "the primary stayed blocked on a backup that stopped reading");
        Assert.Equal(SyncOutcome.Aborted, p.Result.Outcome);
        Assert.True(pair.PrimaryVm.Running);
        Assert.DoesNotContain(1, pair.PrimaryNic.Sent);
        release.Set();
        Assert.Equal(SyncOutcome.Aborted, b.Result.Outcome);
        Assert.True(pair.BackupMemory.Matches(old));
    }
}
