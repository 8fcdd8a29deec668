using System.Buffers.Binary;
using Plover.Consensus;
using Plover.Idle;
using Plover.Node;
using Plover.Sync;
using Xunit;

namespace Plover.Tests.Replica.Core;

/// <summary>The replica core alone: one event in, the exact actions out.</summary>
public sealed class ReplicaCoreTests
{
    private static readonly Ballot B1 = new(1, 1);

    private static ReplicaCore Core(ReplicaRole role, bool joining = false, bool leader = true, bool idle = true, long backupLossMs = 1000,
                                    bool imagesStale = false)
    {
        var options = new ReplicaOptions
        {
            Role = role, Joining = joining, ImagesStale = imagesStale, PeerId = role == ReplicaRole.Primary ? 2 : 1, Log = _ => { },
            BackupLoss = TimeSpan.FromMilliseconds(backupLossMs), RetryAfterAbort = TimeSpan.FromMilliseconds(500),
            VcpuThreadIds = idle ? [1] : null, Idle = idle ? new Plover.Config.SyncConfig(100, 25, 3, 200) : null,
        };
        int self = role == ReplicaRole.Primary ? 1 : 2;
        var core = new ReplicaCore(options, self, nicCount: 1,
            new ConsensusStatus(leader && role == ReplicaRole.Primary ? ConsensusRole.Leader : ConsensusRole.Follower, B1, 1, null));
        Step(core, ReplicaEvent.Link(true, 1));
        return core;
    }

    private static string[] Step(ReplicaCore core, ReplicaEvent e)
    {
        core.Step(e);
        var actions = core.Actions.Select(a => ReplicaText.Action(a)).ToArray();
        core.Actions.Clear();
        return actions;
    }

    private static LogEntry Input(long index, params int[] frames)
    {
        var bytes = frames.Select(f => { var b = new byte[4]; BinaryPrimitives.WriteInt32LittleEndian(b, f); return (ReadOnlyMemory<byte>)b; }).ToArray();
        return new LogEntry(index, B1, EntryType.Input, EntryPayloads.EncodeInput(0, bytes));
    }

    private static LogEntry Sync(long index, ulong epoch) => new(index, B1, EntryType.Sync, EntryPayloads.EncodeSync(epoch));
    private static LogEntry Role(long index, Ballot ballot, int primary, int backup) => new(index, ballot, EntryType.Role, EntryPayloads.EncodeRole(ballot, primary, backup));
    private static ReplicaEvent Committed(LogEntry e) => ReplicaEvent.Committed(e);

    [Fact]
    public void A_primary_starts_holding_output_with_its_idle_monitor()
    {
        var core = Core(ReplicaRole.Primary);
        Assert.Equal(["start-guard", "start-idle-monitor", "event \"started as primary\""], Step(core, ReplicaEvent.Start()));
        Assert.True(core.IsStarted);
    }

    [Fact]
    public void A_joining_backup_starts_by_waiting_for_the_primarys_sync()
    {
        var core = Core(ReplicaRole.Backup, joining: true);
        Assert.Equal(["start-guard", "run-sync join", "event \"started as joining backup (waits for the primary's full sync)\""],
                     Step(core, ReplicaEvent.Start()));
        Assert.False(core.GuestMayStart);
    }

    [Fact]
    public void Entries_committed_before_the_start_wait_for_it()
    {
        var core = Core(ReplicaRole.Backup);
        Assert.Empty(Step(core, Committed(Input(1, 7))));
        Assert.Equal(["start-guard", "inject nic=0 input=7", "event \"started as backup\""], Step(core, ReplicaEvent.Start()));
        Assert.Equal(1, core.LastAppliedIndex);
    }

    [Fact]
    public void An_input_entry_is_injected_frame_by_frame_and_chained_into_the_digest()
    {
        var core = Core(ReplicaRole.Backup);
        Step(core, ReplicaEvent.Start());
        ulong before = core.InputDigest;
        Assert.Equal(["inject nic=0 input=1", "inject nic=0 input=2"], Step(core, Committed(Input(1, 1, 2))));
        Assert.NotEqual(before, core.InputDigest);
        Assert.Equal((1, 1), (core.InputsInjected, core.LastAppliedIndex));
    }

    [Fact]
    public void A_sync_entry_stops_the_vm_and_holds_later_entries_until_the_sync_ends()
    {
        var core = Core(ReplicaRole.Backup);
        Step(core, ReplicaEvent.Start());
        Assert.Equal(["stop-vm", "run-sync e1 at 1 full"], Step(core, Committed(Sync(1, 1))));   // the first sync is full
        Assert.Empty(Step(core, Committed(Input(2, 5))));
        Assert.True(core.HeldAtCut);
        var request = new SyncRequest(1, 1, FullSync: true);
        Assert.Equal(["compact 1", "inject nic=0 input=5"],
                     Step(core, ReplicaEvent.SyncFinished(request, new SyncResult(true, FullSync: true, Epoch: 1, LogIndex: 1))));
        Assert.Equal(["stop-vm", "run-sync e2 at 3"], Step(core, Committed(Sync(3, 2))));   // no longer full
    }

    [Fact]
    public void A_sync_entry_with_an_old_epoch_is_a_duplicate_and_skipped()
    {
        var core = Core(ReplicaRole.Backup);
        Step(core, ReplicaEvent.Start());
        Step(core, Committed(Sync(1, 1)));
        Step(core, ReplicaEvent.SyncFinished(new SyncRequest(1, 1, true), new SyncResult(true, FullSync: true)));
        Assert.Empty(Step(core, Committed(Sync(2, 1))));
        Assert.Equal(2, core.LastAppliedIndex);
    }

    [Fact]
    public void A_primary_without_a_sync_link_skips_the_sync_entry()
    {
        var core = Core(ReplicaRole.Primary);
        Step(core, ReplicaEvent.Start());
        Step(core, ReplicaEvent.Link(false, 1));
        Assert.Empty(Step(core, Committed(Sync(1, 1))));
        Assert.False(core.HeldAtCut);
        Assert.Equal(1ul, core.LastSyncEpoch);
    }

    [Fact]
    public void An_early_resume_lets_the_entries_after_the_latest_cut_in()
    {
        var core = Core(ReplicaRole.Primary);
        Step(core, ReplicaEvent.Start());
        Step(core, Committed(Sync(1, 1)));
        Step(core, Committed(Input(2, 9)));
        Assert.Empty(Step(core, ReplicaEvent.ResumedEarly(new SyncRequest(1, 0))));   // not the latest cut: ignored
        Assert.Equal(["inject nic=0 input=9"], Step(core, ReplicaEvent.ResumedEarly(new SyncRequest(1, 1, true))));
        // A second SYNC while the first runs: held again, two in flight; the first one's end releases nothing.
        Assert.Equal(["stop-vm", "run-sync e2 at 3 full"], Step(core, Committed(Sync(3, 2))));
        Assert.Equal(2, core.SyncsInFlight);
        Step(core, Committed(Input(4, 10)));
        Assert.DoesNotContain("inject nic=0 input=10",
            Step(core, ReplicaEvent.SyncFinished(new SyncRequest(1, 1, true), new SyncResult(true, FullSync: true, Epoch: 1, LogIndex: 1))));
        Assert.True(core.HeldAtCut);
    }

    [Fact]
    public void An_idle_trigger_with_nothing_new_since_the_last_sync_only_rearms()
    {
        var core = Core(ReplicaRole.Primary);
        Step(core, ReplicaEvent.Start());
        Assert.Equal(["propose-sync e1 (IdleSync)"], Step(core, ReplicaEvent.Idle(SyncTrigger.Idle)));
        Step(core, Committed(Sync(1, 1)));
        Step(core, ReplicaEvent.SyncFinished(new SyncRequest(1, 1, true), new SyncResult(true, FullSync: true)));
        Assert.Equal(["rearm-idle-monitor"], Step(core, ReplicaEvent.Idle(SyncTrigger.Idle)));
        Assert.Equal(["propose-sync e2 (IdleSync)"], Step(core, ReplicaEvent.Idle(SyncTrigger.MaxEpoch)));   // the maximum epoch always syncs
        Step(core, ReplicaEvent.OutputHeld());
        Assert.Equal(["propose-sync e3 (IdleSync)"], Step(core, ReplicaEvent.Idle(SyncTrigger.Idle)));   // held output needs a sync
        Assert.Equal((2, 1, 1, 0), core.SyncTriggers);   // idle, max epoch, nothing new, refused
    }

    [Fact]
    public void A_lost_backup_is_dropped_by_one_ROLE_proposal_after_the_backup_loss_time()
    {
        var core = Core(ReplicaRole.Primary, backupLossMs: 100);
        Step(core, ReplicaEvent.Start());
        Step(core, ReplicaEvent.Link(false, 1));
        Assert.Empty(Step(core, ReplicaEvent.Tick(1000, backupAnswering: false, guardHolding: true)));   // noted
        Assert.Empty(Step(core, ReplicaEvent.Tick(1080, false, true)));
        Assert.Equal(["close-sync-connection", "propose-role backup=none (RunAlone)", "event \"backup lost for 100 ms: ROLE(no backup) proposed\""],
                     Step(core, ReplicaEvent.Tick(1100, false, true)));
        Assert.Empty(Step(core, ReplicaEvent.Tick(1120, false, true)));   // once
        Step(core, ReplicaEvent.ProposalRefused(ProposalPurpose.RunAlone));
        Assert.Contains("propose-role backup=none (RunAlone)", Step(core, ReplicaEvent.Tick(1140, false, true)));   // refused: again
        Assert.Equal(["guard-run-unprotected \"ROLE at index 1: node 1 runs without a backup in term 1\"", "event \"running unprotected (ROLE at 1)\""],
                     Step(core, Committed(Role(1, B1, 1, 0))));
        Assert.True(core.RunsAlone);
    }

    [Fact]
    public void A_new_connection_to_a_primary_running_alone_protects_it_and_proposes_a_full_sync()
    {
        var core = Core(ReplicaRole.Primary);
        Step(core, ReplicaEvent.Start());
        Step(core, ReplicaEvent.Tick(1000, true, true));   // the first connection is the fresh cluster's backup
        Step(core, Committed(Role(1, B1, 1, 0)));
        Step(core, ReplicaEvent.Link(true, 2));
        Assert.Equal(["guard-protect", "propose-sync e1 (NewBackupSync)"], Step(core, ReplicaEvent.Tick(1020, true, false)));
        Assert.Equal(["stop-vm", "run-sync e1 at 2 full"], Step(core, Committed(Sync(2, 1))));
        Assert.Equal(["compact 2", "rearm-idle-monitor", "guard-protect", "event \"protected again by node 2\"", "propose-role backup=2 (Reprotect)"],
                     Step(core, ReplicaEvent.SyncFinished(new SyncRequest(1, 2, true), new SyncResult(true, FullSync: true, Epoch: 1, LogIndex: 2))));
        Assert.False(core.RunsAlone);
    }

    [Fact]
    public void A_backup_elected_leader_is_promoted_at_its_own_ROLE_entry()
    {
        var core = Core(ReplicaRole.Backup);
        Step(core, ReplicaEvent.Start());
        var b2 = new Ballot(2, 2);
        Step(core, ReplicaEvent.ConsensusChanged(new ConsensusStatus(ConsensusRole.Leader, b2, 2, null)));
        Assert.Equal(["set-sync-role primary", "close-sync-connection", "guard-promote", "announce", "start-idle-monitor", "event \"promoted to primary in ballot 2.2\""],
                     Step(core, Committed(Role(1, b2, 2, 0))));
        Assert.Equal(ReplicaRole.Primary, core.Role);
        Assert.True(core.RunsAlone);
        // A fence of a ballot older than the promotion is stale.
        Assert.Empty(Step(core, ReplicaEvent.Fenced(new Fence(B1, FenceReason.HigherBallot))));
        Assert.Equal(ReplicaRole.Primary, core.Role);
    }

    [Fact]
    public void A_backup_with_stale_images_elected_before_its_first_sync_does_not_serve_and_after_it_may_take_over()
    {
        var core = Core(ReplicaRole.Backup, imagesStale: true);
        Step(core, ReplicaEvent.Start());
        var b2 = new Ballot(2, 2);
        Step(core, ReplicaEvent.ConsensusChanged(new ConsensusStatus(ConsensusRole.Leader, b2, 2, null)));
        Assert.Empty(Step(core, Committed(Role(1, b2, 2, 0))));   // output stays held, the VM's old images never serve
        Assert.Equal(ReplicaRole.Backup, core.Role);

        var fresh = Core(ReplicaRole.Backup, imagesStale: true);
        Step(fresh, ReplicaEvent.Start());
        Step(fresh, Committed(Sync(1, 1)));
        Assert.Equal(["set-can-campaign true", "event \"images current at sync e1: may take over\"", "compact 1"],
                     Step(fresh, ReplicaEvent.SyncFinished(new SyncRequest(1, 1, true), new SyncResult(true, FullSync: true, Epoch: 1, LogIndex: 1))));
        Step(fresh, ReplicaEvent.ConsensusChanged(new ConsensusStatus(ConsensusRole.Leader, b2, 2, null)));
        Assert.Contains("guard-promote", Step(fresh, Committed(Role(2, b2, 2, 0))));
        Assert.Equal(ReplicaRole.Primary, fresh.Role);
    }

    [Fact]
    public void A_backup_with_stale_images_whose_first_sync_aborts_stays_barred()
    {
        var core = Core(ReplicaRole.Backup, imagesStale: true);
        Step(core, ReplicaEvent.Start());
        Step(core, Committed(Sync(1, 1)));
        Assert.DoesNotContain("set-can-campaign true",
            Step(core, ReplicaEvent.SyncFinished(new SyncRequest(1, 1, true), new SyncResult(false, Error: "closed"))));
        Step(core, ReplicaEvent.ConsensusChanged(new ConsensusStatus(ConsensusRole.Leader, new Ballot(2, 2), 2, null)));
        Assert.Empty(Step(core, Committed(Role(2, new Ballot(2, 2), 2, 0))));
    }

    [Fact]
    public void A_primary_deposed_during_a_sync_is_fenced_at_once_and_joins_when_the_sync_ended()
    {
        var core = Core(ReplicaRole.Primary);
        Step(core, ReplicaEvent.Start());
        Step(core, Committed(Sync(1, 1)));
        Assert.Equal(["guard-fence \"deposed: no longer leader of ballot 1.1 (HigherBallot)\"", "event \"fenced in ballot 1.1: HigherBallot\"", "close-sync-connection"],
                     Step(core, ReplicaEvent.Fenced(new Fence(B1, FenceReason.HigherBallot))));
        Assert.True(core.IsFenced);
        Assert.Equal(["stop-idle-monitor", "stop-vm", "guard-demote", "set-sync-role backup", "set-can-campaign false",
                      "event \"joining: deposed as leader of ballot 1.1\"", "run-sync join"],
                     Step(core, ReplicaEvent.SyncFinished(new SyncRequest(1, 1, true), new SyncResult(false, Error: "closed"))));
        Assert.True(core.IsJoining);
    }

    [Fact]
    public void A_primary_that_lost_its_quorum_keeps_its_vm_as_a_standby()
    {
        var core = Core(ReplicaRole.Primary);
        Step(core, ReplicaEvent.Start());
        Assert.Equal(["guard-fence \"deposed: no longer leader of ballot 1.1 (LostQuorum)\"", "event \"fenced in ballot 1.1: LostQuorum\"",
                      "stop-idle-monitor", "guard-demote", "set-sync-role backup", "close-sync-connection", "start-vm",
                      "event \"standby: lost its quorum as leader of ballot 1.1\""],
                     Step(core, ReplicaEvent.Fenced(new Fence(B1, FenceReason.LostQuorum))));
        Assert.Equal(ReplicaRole.Backup, core.Role);
        Assert.False(core.IsJoining || core.IsFenced);
    }

    [Fact]
    public void A_join_takes_the_primarys_cut_and_skips_the_entries_it_covers()
    {
        var core = Core(ReplicaRole.Backup, joining: true);
        Step(core, ReplicaEvent.Start());
        Assert.Empty(Step(core, Committed(Input(1, 1))));   // a joining backup injects nothing
        Step(core, Committed(Sync(2, 1)));
        Step(core, Committed(Input(3, 2)));
        Assert.Equal(["install-snapshot 2", "set-can-campaign true", "event \"joined at sync e1 (log index 2)\"", "inject nic=0 input=2"],
                     Step(core, ReplicaEvent.SyncFinished(SyncRequest.Join, new SyncResult(true, FullSync: true, Joined: true, Epoch: 1, LogIndex: 2, InputDigest: 42))));
        Assert.False(core.IsJoining);
        Assert.Equal(1ul, core.LastSyncEpoch);
    }

    [Fact]
    public void A_join_whose_cut_is_older_than_what_the_replica_consumed_is_not_taken()
    {
        var core = Core(ReplicaRole.Backup);
        Step(core, ReplicaEvent.Start());
        Step(core, Committed(Input(1, 1)));
        Step(core, Committed(Input(2, 2)));
        Assert.Contains("run-sync join", Step(core, Committed(Role(3, B1, 1, 0))));   // dropped: joins at index 3
        Assert.Equal(["stop-vm", "run-sync join"],
                     Step(core, ReplicaEvent.SyncFinished(SyncRequest.Join, new SyncResult(true, FullSync: true, Joined: true, Epoch: 1, LogIndex: 1))));
        Assert.True(core.IsJoining);
    }

    [Fact]
    public void A_failed_join_is_retried_after_the_retry_delay()
    {
        var core = Core(ReplicaRole.Backup, joining: true);
        Step(core, ReplicaEvent.Tick(1000, true, true));
        Step(core, ReplicaEvent.Start());
        Assert.Empty(Step(core, ReplicaEvent.SyncFinished(SyncRequest.Join, new SyncResult(false, Error: "no primary sync"))));
        Assert.Empty(Step(core, ReplicaEvent.Tick(1400, true, true)));
        Assert.Equal(["run-sync join"], Step(core, ReplicaEvent.Tick(1500, true, true)));
    }

    [Fact]
    public void A_backlog_is_applied_in_steps_of_bounded_size()
    {
        var core = Core(ReplicaRole.Backup);
        for (int i = 1; i <= ReplicaCore.MaxEntriesPerStep + 10; i++) Step(core, Committed(Input(i, i)));
        var actions = Step(core, ReplicaEvent.Start());
        Assert.Equal(ReplicaCore.MaxEntriesPerStep, actions.Count(a => a.StartsWith("inject")));
        Assert.Contains("yield", actions);
        Assert.Equal(10, Step(core, ReplicaEvent.Continue()).Count(a => a.StartsWith("inject")));
    }
}
