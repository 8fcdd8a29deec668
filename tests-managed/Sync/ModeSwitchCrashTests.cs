using Plover.Sync;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>
/// Adaptive mode's switching sync (the sync at a SYNC entry that names the other mode: it runs in the old mode, and
/// both replicas continue in the new one) with a replica dying at every step, as <see cref="SyncCrashTests"/> does
/// for an ordinary sync. Whatever the step, the backup ends with its old state or the new one, never a mix (but for
/// the documented torn apply), and the first sync in the new mode, with the flags the replica core gives it
/// (<see cref="SyncRequest.BackupOwnDirt"/> when the switch to checkpointing did not complete), makes the replicas
/// identical again: in checkpoint mode the backup's VM does not run, in replication it runs from whatever state it
/// kept.
/// </summary>
public class ModeSwitchCrashTests
{
    private static readonly (string, ulong)[] Layout = [("pc.ram", 4UL << 20), ("vga.vram", 1UL << 20)];

    public static TheoryData<bool, SyncRole, SyncStep, int, bool> Crashes()
    {
        var data = new TheoryData<bool, SyncRole, SyncStep, int, bool>();
        foreach (bool toCheckpoint in new[] { true, false })
            foreach (bool earlyResume in new[] { false, true })
                foreach (var role in new[] { SyncRole.Primary, SyncRole.Backup })
                {
                    foreach (var step in new[] { SyncStep.Stopped, SyncStep.BitmapsExchanged, SyncStep.BeforeDeviceState, SyncStep.BeforeApply })
                        data.Add(toCheckpoint, role, step, 1, earlyResume);
                    data.Add(toCheckpoint, role, SyncStep.PageBatch, 3, earlyResume);   // mid page transfer
                    if (toCheckpoint) data.Add(toCheckpoint, role, SyncStep.Hashed, 1, earlyResume);   // a checkpoint hashes nothing
                }
        foreach (bool toCheckpoint in new[] { true, false })
        {
            data.Add(toCheckpoint, SyncRole.Backup, SyncStep.BeforeAck, 1, false);   // applied, ack never sent
            data.Add(toCheckpoint, SyncRole.Backup, SyncStep.Applying, 1, false);    // half applied: torn
        }
        return data;
    }

    private static SyncRequest Request(ulong epoch, bool checkpoint, bool next, bool ownDirt = false) =>
        new(epoch, (long)epoch * 100) { Checkpoint = checkpoint, NextCheckpoint = next, BackupOwnDirt = ownDirt };

    private static (SyncStats Primary, SyncStats Backup) Run(SyncPair pair, SyncRequest request)
    {
        var p = pair.Primary.RunAsync(request);
        var b = pair.Backup.RunAsync(request);
        Assert.True(Task.WaitAll([p, b], TimeSpan.FromSeconds(60)), "sync did not finish");
        return (p.Result, b.Result);
    }

    /// <summary>The primary's guest alone writes (a checkpointing epoch: the backup's VM does not run).</summary>
    private static void PrimaryWrites(SyncPair pair, Random rng, int pages)
    {
        var blocks = pair.PrimaryMemory.Blocks;
        for (int i = 0; i < pages; i++)
        {
            int b = rng.Next(blocks.Count);
            pair.PrimaryMemory.Write(b, (ulong)rng.NextInt64((long)blocks[b].Pages), rng.Next(512) * 8, (ulong)rng.NextInt64());
        }
    }

    [Theory]
    [MemberData(nameof(Crashes))]
    public void CrashInTheSwitchingSync_TheFirstSyncInTheNewModeRepairsEverything(bool toCheckpoint, SyncRole victim, SyncStep step, int occurrence, bool earlyResume)
    {
        var crash = new InjectedCrash(victim, step, occurrence);
        SyncOptions Options() => new()
        {
            PagesPerFrame = 8, HashesPerFrame = 64, Timeout = TimeSpan.FromSeconds(5), StepHook = crash.Hook, SubBlockChunkPages = 16,
            EarlyResume = earlyResume, Log = _ => { },
        };
        var pair = crash.Pair = new SyncPair(Layout, Options(), Options());
        using var _ = pair;
        var rng = new Random((int)step * 10 + (int)victim + (toCheckpoint ? 100 : 0));
        var work = new Workload(pair, seed: rng.Next());
        bool oldMode = !toCheckpoint, newMode = toCheckpoint;

        // A clean sync in the old mode, then an epoch of it: replicating, both guests write (diverging);
        // checkpointing, only the primary's does.
        Assert.Equal(SyncOutcome.Completed, Run(pair, Request(1, oldMode, oldMode)).Backup.Outcome);
        if (oldMode) PrimaryWrites(pair, rng, 300);
        else work.Run(0.1, 0.5);
        pair.PrimaryVm.DeviceState = [9, 9, 9, 9];
        pair.PrimaryNic.GuestSends(42);
        var oldBackup = pair.BackupMemory.Snapshot();
        var oldDevice = pair.BackupVm.DeviceState;

        crash.Armed = true;
        var (p, b) = Run(pair, Request(2, oldMode, newMode));
        crash.Armed = false;
        Assert.Equal(occurrence, crash.Seen);
        Assert.Equal(SyncOutcome.Aborted, p.Outcome);
        Assert.Equal(oldMode, p.Checkpoint);
        Assert.Equal(newMode, p.NextCheckpoint);
        bool applied = (victim == SyncRole.Primary && step == SyncStep.BeforeApply) || (victim == SyncRole.Backup && step == SyncStep.BeforeAck);
        bool torn = victim == SyncRole.Backup && step == SyncStep.Applying;
        if (torn) Assert.True(pair.Backup.StateInvalid);
        else if (applied) Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
        else
        {
            Assert.True(pair.BackupMemory.Matches(oldBackup), "the backup's memory changed in an aborted sync");
            Assert.Same(oldDevice, pair.BackupVm.DeviceState);
        }
        Assert.DoesNotContain(42, pair.PrimaryNic.Sent);

        // The new mode's first epoch. Into checkpointing the backup's VM stays stopped (the gate); back into
        // replication it runs again, from whatever state it kept, and writes too.
        pair.Connect();
        if (newMode) PrimaryWrites(pair, rng, 50);
        else work.Run(0.02, 0.5);
        // As ReplicaCore says: the backup's own dirt counts in a checkpoint if its VM ran since its last completed
        // sync, i.e. it replicated the epoch of a switch whose sync did not complete on its side.
        bool ownDirt = newMode && !oldMode && b.Outcome != SyncOutcome.Completed;
        var (p3, b3) = Run(pair, Request(3, newMode, newMode, ownDirt));
        Assert.Equal(SyncOutcome.Completed, p3.Outcome);
        Assert.Equal(SyncOutcome.Completed, b3.Outcome);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
        Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
        Assert.Contains(42, pair.PrimaryNic.Sent);
    }

    /// <summary>Why <see cref="SyncRequest.BackupOwnDirt"/> exists: after a switch to checkpointing whose sync the
    /// backup aborted, pages only the backup's guest wrote in the replicated epoch are in no bitmap but its own. A
    /// checkpoint that leaves that bitmap out leaves them different; with it, the replicas are identical.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AfterAnAbortedSwitchToCheckpointing_TheBackupsOwnDirtMustBeSent(bool ownDirt)
    {
        bool armed = false;
        SyncPair? pair = null;
        void Hook(SyncRole role, SyncStep at)
        {
            if (!armed || role != SyncRole.Backup || at != SyncStep.BitmapsExchanged) return;
            pair!.Backup.Connection?.Dispose();
            throw new IOException("injected crash of the backup");
        }
        SyncOptions Options() => new() { Timeout = TimeSpan.FromSeconds(5), StepHook = Hook, EarlyResume = false, Log = _ => { } };
        pair = new SyncPair(Layout, Options(), Options());
        using var _ = pair;
        Assert.Equal(SyncOutcome.Completed, Run(pair, Request(1, false, false)).Backup.Outcome);
        for (ulong page = 10; page < 20; page++) pair.BackupMemory.Write(0, page, 0, 0xBAD0BAD0UL + page);   // the backup's guest alone
        pair.PrimaryMemory.Write(0, 500, 0, 7UL);
        armed = true;
        Assert.Equal(SyncOutcome.Aborted, Run(pair, Request(2, false, true)).Backup.Outcome);
        armed = false;
        pair.Connect();
        var (p3, b3) = Run(pair, Request(3, true, true, ownDirt));
        Assert.Equal(SyncOutcome.Completed, b3.Outcome);
        Assert.True(p3.Checkpoint);
        if (ownDirt)
        {
            Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
            Assert.Equal(11UL, p3.UnionPages);
        }
        else Assert.Equal((0, 10UL), pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
    }

    [Fact]
    public void ReplicasThatDisagreeOnTheModeAbortNamingIt()
    {
        using var pair = new SyncPair(Layout, new SyncOptions { Log = _ => { } }, new SyncOptions { Log = _ => { } });
        var p = pair.Primary.RunAsync(Request(1, false, true));
        var b = pair.Backup.RunAsync(Request(1, false, false));
        Assert.True(Task.WaitAll([p, b], TimeSpan.FromSeconds(30)));
        Assert.Equal(SyncOutcome.Aborted, b.Result.Outcome);
        Assert.Contains("the primary runs sync e1 as replicate (then checkpoint), this backup's log says replicate (then replicate)", b.Result.Error);
        Assert.Contains("sync.mode must be the same on both replicas", b.Result.Error);
    }
}
