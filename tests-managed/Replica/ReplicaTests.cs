using System.Buffers.Binary;
using Plover.Sync;
using Plover.Tests.Transport;
using Xunit;

namespace Plover.Tests.Replica;

/// <summary>Two replicas and a witness in one process (see <see cref="ReplicaCluster"/>): the three promises.</summary>
public sealed class ReplicaTests
{
    internal static int[] Seqs(byte[][] frames) => frames.Select(f => BinaryPrimitives.ReadInt32LittleEndian(f)).ToArray();

    private static void WaitInjected(ReplicaCluster c, int count) =>
        Assert.True(TransportTestKit.WaitUntil(() => c.PrimaryHost.InjectedSnapshot().Length >= count && c.BackupHost.InjectedSnapshot().Length >= count, 20000),
            $"injected {c.PrimaryHost.InjectedSnapshot().Length} on the primary, {c.BackupHost.InjectedSnapshot().Length} on the backup, expected {count}\n{c.Log}");

    [Fact]
    public void Inputs_are_injected_on_both_in_the_same_order_and_a_sync_makes_memories_identical() =>
        InjectInOrderAndSync(new ReplicaCluster());

    /// <summary>The same with consensus and the sync link over UCX (its TCP transport here).</summary>
    [Transport.Ucx.UcxFact]
    public void OverUcx_inputs_are_injected_on_both_in_the_same_order_and_a_sync_makes_memories_identical() =>
        InjectInOrderAndSync(new ReplicaCluster(ucx: Plover.Transport.Ucx.UcxSettings.OverTcp));

    private static void InjectInOrderAndSync(ReplicaCluster cluster)
    {
        using var c = cluster;
        for (int chunk = 0; chunk < 4; chunk++)
            ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 1 + chunk * 25, 25);
        ReplicaCluster.Arrive(c.BackupHost, c.Backup, 1000, 10);   // the backup's own netdev: dropped
        WaitInjected(c, 100);

        var primary = c.PrimaryHost.InjectedSnapshot();
        var backup = c.BackupHost.InjectedSnapshot();
        Assert.Equal(Enumerable.Range(1, 100), Seqs(primary));
        Assert.Equal(primary.Length, backup.Length);
        for (int i = 0; i < primary.Length; i++) Assert.True(primary[i].AsSpan().SequenceEqual(backup[i]), $"frame {i} differs");
        Assert.Equal(10, c.Backup.FramesDropped);
        Assert.Equal(100, c.Primary.FramesStolen);

        Assert.NotNull(c.PrimaryHost.MemoryImpl.FirstDifference(c.BackupHost.MemoryImpl));   // the primary's guest diverged
        Assert.Empty(c.PrimaryHost.Nic.Sent);                                                // its replies are held
        Assert.Equal(100, c.PrimaryHost.Nic.Held);

        c.SyncNow();

        Assert.Null(c.PrimaryHost.MemoryImpl.FirstDifference(c.BackupHost.MemoryImpl));
        Assert.Equal(c.PrimaryHost.VmImpl.DeviceState, c.BackupHost.VmImpl.DeviceState);
        Assert.Equal(Enumerable.Range(1, 100), c.PrimaryHost.Nic.Sent);      // released after the ack
        Assert.Equal(Enumerable.Range(1, 100), c.BackupHost.Nic.Dropped);    // the backup's copy is discarded
        Assert.Empty(c.BackupHost.Nic.Sent);
        Assert.Equal(0, c.PrimaryHost.Violations);
        Assert.Equal(0, c.BackupHost.Violations);
        Assert.True(c.PrimaryHost.VmImpl.Running && c.BackupHost.VmImpl.Running);
        Assert.Equal(1UL, c.Primary.LastSyncEpoch);
        Assert.Equal(1UL, c.Backup.LastSyncEpoch);
    }

    [Fact]
    public void Output_is_released_only_after_the_backup_acked_the_sync()
    {
        ReplicaCluster? cluster = null;
        var sentAt = new List<(SyncRole, SyncStep, int)>();
        void Hook(SyncRole role, SyncStep step)
        {
            if (step is SyncStep.Stopped or SyncStep.BeforeApply or SyncStep.BeforeAck)
                lock (sentAt) sentAt.Add((role, step, cluster!.PrimaryHost.Nic.Sent.Count));
        }
        using var c = cluster = new ReplicaCluster(Hook);
        ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 1, 40);
        WaitInjected(c, 40);
        c.SyncNow();
        Assert.Equal(40, c.PrimaryHost.Nic.Sent.Count);
        lock (sentAt)
        {
            // Up to the backup's last step before its ack (state applied, VM resumed), nothing left the primary.
            Assert.Contains(sentAt, s => s.Item1 == SyncRole.Backup && s.Item2 == SyncStep.BeforeAck);
            Assert.Contains(sentAt, s => s.Item1 == SyncRole.Primary && s.Item2 == SyncStep.BeforeApply);
            Assert.All(sentAt, s => Assert.Equal(0, s.Item3));
        }

        // Second epoch: new replies are held again until the next ack.
        ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 41, 10);
        WaitInjected(c, 50);
        Assert.Equal(40, c.PrimaryHost.Nic.Sent.Count);
        c.SyncNow();
        Assert.Equal(Enumerable.Range(1, 50), c.PrimaryHost.Nic.Sent);
    }

    [Fact]
    public void Both_replicas_stop_at_the_sync_position_and_later_inputs_wait_for_the_resume()
    {
        ReplicaCluster? cluster = null;
        var injectedAtStop = new List<(SyncRole, int)>();
        void Hook(SyncRole role, SyncStep step)
        {
            if (step != SyncStep.Stopped) return;
            var host = role == SyncRole.Primary ? cluster!.PrimaryHost : cluster!.BackupHost;
            lock (injectedAtStop) injectedAtStop.Add((role, host.InjectedSnapshot().Length));
            Thread.Sleep(300);   // keep the VMs stopped while the later inputs commit
        }
        using var c = cluster = new ReplicaCluster(Hook);
        ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 1, 60);
        // Proposed right behind the inputs, before they are known to be committed; more inputs follow at once.
        Assert.True(TransportTestKit.WaitUntil(() => c.Primary.ProposeSync()), c.Log.ToString());
        ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 61, 60);
        WaitInjected(c, 120);
        Assert.True(TransportTestKit.WaitUntil(() => c.CompletedSyncs(c.PrimarySyncs) == 1 && c.CompletedSyncs(c.BackupSyncs) == 1, 30000), c.Log.ToString());

        lock (injectedAtStop)
        {
            Assert.Equal(2, injectedAtStop.Count);
            Assert.Equal(injectedAtStop[0].Item2, injectedAtStop[1].Item2);   // the same log position on both
        }
        Assert.Equal(c.PrimarySyncs[0].LogIndex, c.BackupSyncs[0].LogIndex);
        Assert.Equal(Enumerable.Range(1, 120), Seqs(c.PrimaryHost.InjectedSnapshot()));
        Assert.Equal(Seqs(c.PrimaryHost.InjectedSnapshot()), Seqs(c.BackupHost.InjectedSnapshot()));
        Assert.Equal(0, c.PrimaryHost.Violations);   // nothing injected while a VM was stopped
        Assert.Equal(0, c.BackupHost.Violations);

        // The inputs after the cut diverged the primary again; the next sync makes the memories equal once more.
        c.SyncNow();
        Assert.Null(c.PrimaryHost.MemoryImpl.FirstDifference(c.BackupHost.MemoryImpl));
        Assert.Equal(Enumerable.Range(1, 120), c.PrimaryHost.Nic.Sent);
    }
}

public sealed class ReplicaFailoverTests
{
    [Fact]
    public void An_isolated_primary_is_fenced_and_the_backup_is_promoted_and_serves()
    {
        using var c = new ReplicaCluster();
        ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 1, 20);
        Assert.True(TransportTestKit.WaitUntil(() => c.BackupHost.InjectedSnapshot().Length == 20, 20000), c.Log.ToString());
        c.SyncNow();
        ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 21, 5);   // epoch 2: held on both, never synced
        Assert.True(TransportTestKit.WaitUntil(() => c.BackupHost.InjectedSnapshot().Length == 25, 20000), c.Log.ToString());
        Assert.Equal(20, c.PrimaryHost.Nic.Sent.Count);

        c.IsolatePrimary();

        Assert.True(TransportTestKit.WaitUntil(() => c.Backup.Role == Plover.Node.ReplicaRole.Primary, 20000), c.Log.ToString());
        Assert.True(TransportTestKit.WaitUntil(() => c.BackupHost.Announces == 1, 5000), c.Log.ToString());
        // The isolated primary only lost its quorum: it discards what it held and keeps its VM as a standby backup
        // (cut off for good here; reconnected, the new primary's ROLE entry would make it join).
        // Role is the core's; its actions (guard demotion, events) run on the driver right after: wait for the last.
        Assert.True(TransportTestKit.WaitUntil(() => c.Primary.Role == Plover.Node.ReplicaRole.Backup
            && c.Primary.Events.Any(e => e.What.StartsWith("standby:")), 5000), c.Log.ToString());
        Assert.Contains(c.Primary.Events, e => e.What.StartsWith("fenced in ballot 1.1: LostQuorum"));
        Assert.False(c.Primary.IsJoining);
        Assert.False(c.Primary.IsFenced);
        Assert.Equal(Plover.Guard.GuardRole.Backup, c.Primary.Guard.Role);
        Assert.True(c.PrimaryHost.VmImpl.Running);
        Assert.Equal([21, 22, 23, 24, 25], c.PrimaryHost.Nic.Dropped.TakeLast(5));   // what it held never leaves
        Assert.Equal(Plover.Guard.GuardState.Unprotected, c.Backup.Guard.State);
        Assert.True(c.Backup.RunsAlone);
        // The deposed primary never releases the epoch the backup did not ack; the new primary released its copy.
        Assert.Equal(20, c.PrimaryHost.Nic.Sent.Count);
        Assert.False(c.Primary.ProposeSync());
        Assert.Equal(Enumerable.Range(21, 5), c.BackupHost.Nic.Sent);

        // The new primary takes inputs through the log (backup and witness are a majority) and answers at once.
        ReplicaCluster.Arrive(c.BackupHost, c.Backup, 100, 10);
        Assert.True(TransportTestKit.WaitUntil(() => c.BackupHost.InjectedSnapshot().Length == 35, 20000), c.Log.ToString());
        Assert.Equal(Enumerable.Range(21, 5).Concat(Enumerable.Range(100, 10)), c.BackupHost.Nic.Sent);
        Assert.Equal(0, c.BackupHost.Violations);
    }
}

public sealed class ReplicaDiskGenerationTests
{
    /// <summary>Issue 15: which replica's drive images are newest must survive a full outage. A backup takes its
    /// primary's generation once it applied a sync; promoted, it serves one past it: newer than its old primary's.</summary>
    [Fact]
    public void A_synced_backup_takes_its_primarys_generation_and_promoted_serves_one_past_it()
    {
        using var c = new ReplicaCluster(disks: true);
        var primaryDisks = (SyntheticDisks)c.PrimaryHost.Disks!;
        var backupDisks = (SyntheticDisks)c.BackupHost.Disks!;
        primaryDisks.GuestWrite(0, 4096, [1, 2, 3]);
        ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 1, 5);
        Assert.True(TransportTestKit.WaitUntil(() => c.BackupHost.InjectedSnapshot().Length == 5, 20000), c.Log.ToString());
        c.SyncNow();
        Assert.Equal(new DiskGeneration(1, Primary: false), backupDisks.Generation);
        Assert.True(primaryDisks.Generation.IsNewerThan(backupDisks.Generation));
        Assert.True(primaryDisks.Bytes(0).SequenceEqual(backupDisks.Bytes(0)));

        c.IsolatePrimary();
        Assert.True(TransportTestKit.WaitUntil(() => c.Backup.Role == Plover.Node.ReplicaRole.Primary, 20000), c.Log.ToString());
        // recorded by the promotion's actions, which run just after the role changed (before any output is released)
        Assert.True(TransportTestKit.WaitUntil(() => backupDisks.Generation.Primary, 5000), c.Log.ToString());
        Assert.Equal(new DiskGeneration(2, Primary: true), backupDisks.Generation);
        Assert.True(backupDisks.Generation.IsNewerThan(primaryDisks.Generation));
        Assert.Equal(new DiskGeneration(1, Primary: true), primaryDisks.Generation);   // the deposed one never bumps
        Assert.Equal(2, backupDisks.GenerationsRecorded);
    }
}

public sealed class ReplicaEarlyResumeTests
{
    [Fact]
    public void A_primary_that_resumed_early_takes_later_inputs_while_the_backup_applies_and_the_backup_catches_up()
    {
        using var atApply = new ManualResetEventSlim();
        using var go = new ManualResetEventSlim();
        bool armed = false;
        void Hook(SyncRole role, SyncStep step)
        {
            if (!armed || role != SyncRole.Backup || step != SyncStep.BeforeApply) return;
            atApply.Set();
            go.Wait(TimeSpan.FromSeconds(20));
        }
        using var c = new ReplicaCluster(Hook);
        ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 1, 10);
        Assert.True(TransportTestKit.WaitUntil(() => c.BackupHost.InjectedSnapshot().Length == 10, 20000), c.Log.ToString());

        armed = true;
        Assert.True(c.Primary.ProposeSync());
        Assert.True(atApply.Wait(TimeSpan.FromSeconds(20)), "the backup never reached its apply\n" + c.Log);
        // The backup holds at its cut until it applied; the primary's guest already runs and takes the next inputs.
        ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 11, 5);
        Assert.True(TransportTestKit.WaitUntil(() => c.PrimaryHost.InjectedSnapshot().Length == 15, 20000), c.Log.ToString());
        Assert.Equal(10, c.BackupHost.InjectedSnapshot().Length);
        Assert.Empty(c.PrimaryHost.Nic.Sent);   // the replies of the synced epoch wait for the ack
        armed = false;
        go.Set();

        Assert.True(TransportTestKit.WaitUntil(() => c.BackupHost.InjectedSnapshot().Length == 15, 20000), c.Log.ToString());
        Assert.True(TransportTestKit.WaitUntil(() => c.PrimaryHost.Nic.Sent.Count == 10, 20000), c.Log.ToString());
        Assert.Equal(Enumerable.Range(1, 10), c.PrimaryHost.Nic.Sent);   // not the replies to 11..15: next epoch
        // the sync's record is posted after its output left (under load the check came first and found none)
        Assert.True(TransportTestKit.WaitUntil(() => { lock (c.PrimarySyncs) return c.PrimarySyncs.Count > 0; }, 20000), c.Log.ToString());
        lock (c.PrimarySyncs) Assert.True(c.PrimarySyncs[^1].ResumedEarly, c.PrimarySyncs[^1].ToString());

        c.SyncNow();
        Assert.Null(c.PrimaryHost.MemoryImpl.FirstDifference(c.BackupHost.MemoryImpl));
        Assert.Equal(Enumerable.Range(1, 15), c.PrimaryHost.Nic.Sent);
        Assert.Equal(0, c.PrimaryHost.Violations + c.BackupHost.Violations);
    }
}

public sealed class ReplicaIdleTriggerTests
{
    [Fact]
    public void An_idle_guest_is_synced_without_being_asked_and_not_again_until_new_input()
    {
        using var c = new ReplicaCluster(idleTrigger: true);
        // The first (full) sync comes on its own.
        Assert.True(TransportTestKit.WaitUntil(() => c.CompletedSyncs(c.BackupSyncs) >= 1, 20000), c.Log.ToString());

        ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 1, 15);
        // The inputs are followed by a sync that releases their replies, with nobody proposing it by hand.
        Assert.True(TransportTestKit.WaitUntil(() => c.PrimaryHost.Nic.Sent.Count == 15, 20000), c.Log.ToString());
        Assert.True(TransportTestKit.WaitUntil(() => c.CompletedSyncs(c.BackupSyncs) == c.CompletedSyncs(c.PrimarySyncs), 20000), c.Log.ToString());
        Assert.Null(c.PrimaryHost.MemoryImpl.FirstDifference(c.BackupHost.MemoryImpl));

        // Idle with no new input: no more stop/start of the VM (the maximum epoch, 200 ms, still syncs now and then).
        int syncs = c.CompletedSyncs(c.PrimarySyncs);
        Thread.Sleep(150);
        Assert.True(c.CompletedSyncs(c.PrimarySyncs) <= syncs + 2, $"{c.CompletedSyncs(c.PrimarySyncs) - syncs} syncs of an idle guest in 150 ms");
        Assert.Equal(0, c.PrimaryHost.Violations + c.BackupHost.Violations);
    }
}

public sealed class ReplicaLoadTests
{
    [Fact]
    public void Many_inputs_with_syncs_proposed_concurrently_keep_one_order_and_end_identical()
    {
        using var c = new ReplicaCluster();
        using var stop = new CancellationTokenSource();
        var syncer = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                c.Primary.ProposeSync();
                Thread.Sleep(3);
            }
        });
        for (int chunk = 0; chunk < 40; chunk++)
        {
            ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 1 + chunk * 20, 20);
            if (chunk % 8 == 7) Assert.True(TransportTestKit.WaitUntil(() => c.Primary.ProposeSync()), c.Log.ToString());   // besides the syncer's
        }
        Assert.True(TransportTestKit.WaitUntil(() => c.BackupHost.InjectedSnapshot().Length == 800 && c.PrimaryHost.InjectedSnapshot().Length == 800, 60000),
            $"{c.PrimaryHost.InjectedSnapshot().Length} / {c.BackupHost.InjectedSnapshot().Length} injected\n{c.Log}");
        stop.Cancel();
        syncer.Wait();
        // Quiet: every proposal committed and applied on both, every sync begun has finished on both.
        Assert.True(TransportTestKit.WaitUntil(() => c.PrimaryDriver.CommitIndex == c.PrimaryDriver.LastIndex &&
                                                     c.Primary.LastAppliedIndex == c.PrimaryDriver.CommitIndex &&
                                                     c.Backup.LastAppliedIndex == c.PrimaryDriver.CommitIndex &&
                                                     c.Primary.LastSyncEpoch == c.Backup.LastSyncEpoch &&
                                                     c.CompletedSyncs(c.PrimarySyncs) + c.Primary.SyncsAborted == (long)c.Primary.LastSyncEpoch &&
                                                     c.CompletedSyncs(c.BackupSyncs) + c.Backup.SyncsAborted == (long)c.Backup.LastSyncEpoch, 30000), c.Log.ToString());
        Assert.True(c.CompletedSyncs(c.PrimarySyncs) >= 2, $"only {c.CompletedSyncs(c.PrimarySyncs)} syncs ran during the load");

        Assert.Equal(Enumerable.Range(1, 800), ReplicaTests.Seqs(c.PrimaryHost.InjectedSnapshot()));
        Assert.Equal(ReplicaTests.Seqs(c.PrimaryHost.InjectedSnapshot()), ReplicaTests.Seqs(c.BackupHost.InjectedSnapshot()));
        Assert.Equal(0, c.PrimaryHost.Violations + c.BackupHost.Violations);
        long[] primaryCuts, backupCuts;
        lock (c.PrimarySyncs) primaryCuts = c.PrimarySyncs.Select(s => s.LogIndex).ToArray();
        lock (c.BackupSyncs) backupCuts = c.BackupSyncs.Select(s => s.LogIndex).ToArray();
        Assert.True(primaryCuts.SequenceEqual(backupCuts),   // every sync at the same log position on both
            $"primary cuts {string.Join(",", primaryCuts)}; backup cuts {string.Join(",", backupCuts)}\n{c.Log}");

        c.SyncNow();
        Assert.Null(c.PrimaryHost.MemoryImpl.FirstDifference(c.BackupHost.MemoryImpl));
        Assert.Equal(Enumerable.Range(1, 800), c.PrimaryHost.Nic.Sent);
        Assert.Equal(Enumerable.Range(1, 800), c.BackupHost.Nic.Dropped);
    }
}

public sealed class ReplicaCheckpointModeTests
{
    [Fact]
    public void Inputs_go_to_the_primary_only_the_backup_never_runs_and_each_checkpoint_makes_it_the_primarys_copy()
    {
        using var c = new ReplicaCluster(checkpoint: true);
        int passed = ReplicaCluster.ArrivePassThrough(c.PrimaryHost, c.Primary, 1, 30);
        Assert.True(passed == 30, $"{passed} of 30 frames passed\n{c.Log}");
        Assert.Equal(0, ReplicaCluster.ArrivePassThrough(c.BackupHost, c.Backup, 500, 5));   // a backup drops them
        Assert.Equal(30, c.Primary.FramesPassed);
        Assert.Equal(0, c.Primary.EntriesProposed);                 // no INPUT entries
        Assert.Empty(c.BackupHost.InjectedSnapshot());
        Assert.Empty(c.PrimaryHost.Nic.Sent);                       // replies held until the checkpoint's ack

        c.SyncNow();   // the first sync is full

        Assert.Null(c.PrimaryHost.MemoryImpl.FirstDifference(c.BackupHost.MemoryImpl));
        Assert.Equal(c.PrimaryHost.VmImpl.DeviceState, c.BackupHost.VmImpl.DeviceState);
        Assert.Equal(Enumerable.Range(1, 30), c.PrimaryHost.Nic.Sent);
        Assert.False(c.BackupHost.VmImpl.Running);                  // a passive backup: its VM never runs
        Assert.True(c.PrimaryHost.VmImpl.Running);

        // An ordinary checkpoint sends every page the primary dirtied, unhashed, and none the backup marked.
        ReplicaCluster.ArrivePassThrough(c.PrimaryHost, c.Primary, 31, 20);
        c.SyncNow();
        SyncStats p;
        lock (c.PrimarySyncs) p = c.PrimarySyncs[^1];
        Assert.False(p.FullSync);
        Assert.True(p.Checkpoint);
        Assert.Equal(p.LocalDirtyPages, p.UnionPages);
        Assert.Equal(p.UnionPages, p.DivergentPages);
        Assert.Equal(0, p.Wire.Hashes);
        Assert.Null(c.PrimaryHost.MemoryImpl.FirstDifference(c.BackupHost.MemoryImpl));
        Assert.False(c.BackupHost.VmImpl.Running);
        Assert.Equal(Enumerable.Range(1, 50), c.PrimaryHost.Nic.Sent);
        Assert.Equal(0, c.PrimaryHost.Violations + c.BackupHost.Violations);
    }

    [Fact]
    public void A_promoted_checkpoint_backup_runs_its_guest_from_the_last_checkpoint()
    {
        using var c = new ReplicaCluster(checkpoint: true);
        ReplicaCluster.ArrivePassThrough(c.PrimaryHost, c.Primary, 1, 20);
        c.SyncNow();
        using var checkpoint = new SyntheticGuestMemory(ReplicaCluster.Blocks);
        checkpoint.CopyFrom(c.BackupHost.MemoryImpl);
        ReplicaCluster.ArrivePassThrough(c.PrimaryHost, c.Primary, 21, 5);   // after the checkpoint: never released
        Assert.False(c.BackupHost.VmImpl.Running);

        c.IsolatePrimary();

        Assert.True(TransportTestKit.WaitUntil(() => c.Backup.Role == Plover.Node.ReplicaRole.Primary, 20000), c.Log.ToString());
        Assert.True(TransportTestKit.WaitUntil(() => c.BackupHost.VmImpl.Running, 5000), c.Log.ToString());
        // (compared at once: the guest it runs now may write, the fake one only when fed a frame)
        Assert.Null(checkpoint.FirstDifference(c.BackupHost.MemoryImpl));
        Assert.Equal(Enumerable.Range(1, 20), c.PrimaryHost.Nic.Sent);       // epoch 2's replies never left
        // The deposed primary's standby VM is stopped: a checkpoint backup never runs.
        Assert.True(TransportTestKit.WaitUntil(() => c.Primary.Role == Plover.Node.ReplicaRole.Backup && !c.PrimaryHost.VmImpl.Running, 5000), c.Log.ToString());
        // The new primary serves: inputs go straight into its guest and its replies leave (it runs alone).
        Assert.Equal(10, ReplicaCluster.ArrivePassThrough(c.BackupHost, c.Backup, 100, 10));
        Assert.True(TransportTestKit.WaitUntil(() => c.BackupHost.Nic.Sent.Count == 10, 5000), c.Log.ToString());
        Assert.Equal(0, c.BackupHost.Violations);
    }
}

/// <summary>Adaptive mode through two real <see cref="Plover.Node.Replica"/>s, their consensus and sync engines: guests
/// that diverge make the cluster checkpoint, guests that agree again make it replicate, and at every sync point the
/// backup holds the primary's memory, with every client frame answered exactly once.</summary>
public sealed class ReplicaAdaptiveModeTests
{
    [Fact]
    public void Diverging_guests_switch_the_cluster_to_checkpointing_and_agreeing_ones_back()
    {
        using var c = new ReplicaCluster(adaptive: new AdaptiveOptions { Window = 2, ProbeEvery = 2, MaxProbeEvery = 4 });
        int fed = 0;
        // Client frames arrive at the primary: proposed while replicating, straight into its guest while checkpointing.
        void Round()
        {
            c.PrimaryHost.MainImpl.Invoke(() =>
            {
                for (int i = 0; i < 10; i++)
                {
                    var frame = ReplicaCluster.Frame(++fed);
                    if (!c.Primary.OnFrameToGuest(0, frame)) c.PrimaryHost.Inject(0, frame);
                }
            });
            // every frame in the primary's guest (committed, when replicating) before the SYNC is proposed: a frame
            // the batcher still held would commit after the cut and run in both guests, whose noise differs
            Assert.True(TransportTestKit.WaitUntil(() => c.PrimaryHost.InjectedCount == fed, 10000), c.Log.ToString());
            c.SyncNow();
            Assert.Null(c.PrimaryHost.MemoryImpl.FirstDifference(c.BackupHost.MemoryImpl));
        }
        Round();   // the first sync is full
        Assert.False(c.Primary.Checkpoint);

        // Each guest overwrites 20 whole pages of its own with random bytes per frame: replicating sends both sides'
        // pages, a checkpoint only the primary's.
        c.PrimaryHost.NoiseBytes = c.BackupHost.NoiseBytes = 4096;
        c.PrimaryHost.NoisePages = c.BackupHost.NoisePages = 20;
        for (int i = 0; i < 20 && !(c.Primary.Checkpoint && c.Backup.Checkpoint); i++) Round();
        Assert.True(c.Primary.Checkpoint && c.Backup.Checkpoint, "no switch to checkpointing\n" + c.Log);
        Assert.Equal((1L, 1L), c.Primary.ModeSwitches);
        Round();
        Assert.False(c.BackupHost.VmImpl.Running, "a checkpoint backup's VM runs");
        SyncStats last;
        lock (c.PrimarySyncs) last = c.PrimarySyncs[^1];
        Assert.True(last.Checkpoint);
        Assert.Equal(0UL, last.RemoteDirtyPages);   // the backup's bitmap is left out
        Assert.Equal(last.LocalDirtyPages, last.UnionPages);

        // The guests agree again: the next trial of replication pays and stays.
        c.PrimaryHost.NoisePages = c.BackupHost.NoisePages = 0;
        int stayed = 0;
        for (int i = 0; i < 30 && stayed < 6; i++)
        {
            Round();
            stayed = c.Primary.Checkpoint || c.Backup.Checkpoint ? 0 : stayed + 1;
        }
        Assert.True(stayed >= 6, "no lasting switch back to replication\n" + c.Log);
        Assert.True(c.BackupHost.VmImpl.Running);
        Assert.True(c.Primary.ModeSwitches.Total >= 2);
        // Every client frame reached the primary's guest once and its reply left once.
        Assert.True(TransportTestKit.WaitUntil(() => c.PrimaryHost.InjectedCount == fed, 10000), c.Log.ToString());
        c.SyncNow();
        Assert.Equal(Enumerable.Range(1, fed), c.PrimaryHost.Nic.Sent.Order());
        Assert.Equal(0, c.PrimaryHost.Violations + c.BackupHost.Violations);
    }
}
