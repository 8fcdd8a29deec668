using Plover.Consensus;
using Plover.Sync;

namespace Plover.Node;

// Roles: ROLE entries, promotion, fencing, standby, joining.
public sealed partial class ReplicaCore
{
    /// <summary>A committed ROLE entry (ballot, primary, backup), in log order on every replica.</summary>
    private void ApplyRole(in LogEntry entry)
    {
        (Ballot ballot, int primary, int backup) role;
        try { role = EntryPayloads.DecodeRole(entry.Payload.Span); }
        catch (FormatException e)
        {
            _log($"replica {_self}: ROLE entry {entry.Index} is malformed ({e.Message}); skipped");
            return;
        }
        if (role.primary == _self)
        {
            _backupId = role.backup;
            if (_role == ReplicaRole.Backup)
            {
                // Our own election's entry: everything committed before it has been applied. Promote, unless this
                // replica cannot serve (joining: its state is not the primary's).
                if (role.ballot == _ballot && _leader) Promote(role.ballot);
                return;
            }
            if (role.backup == 0 && !_runsAlone)
            {
                _runsAlone = true;
                Do(ReplicaActionKind.GuardRunUnprotected, $"ROLE at index {entry.Index}: node {_self} runs without a backup in term {role.ballot.Round}");
                Event($"running unprotected (ROLE at {entry.Index})");
            }
            else if (role.backup != 0)
                Event($"protected by node {role.backup} (ROLE at {entry.Index})");
            return;
        }
        // Another node is the primary.
        if (_role == ReplicaRole.Primary)
        {
            Do(ReplicaActionKind.GuardFence, $"ROLE at index {entry.Index} names node {role.primary} primary in term {role.ballot.Round}");
            _fenced = true;
            CountFence($"node {role.primary} is primary in term {role.ballot.Round}");
            BecomeJoining($"node {role.primary} is primary in term {role.ballot.Round}");
        }
        else if (role.backup != _self && !_joining)
            BecomeJoining($"node {role.primary} is primary in term {role.ballot.Round} without this node as its backup");
    }

    private void ConsensusChanged(ConsensusStatus status)
    {
        _leader = status.Role == ConsensusRole.Leader;
        _ballot = status.Ballot;
        Event($"consensus: {status.Role.ToString().ToLowerInvariant()} in ballot {status.Ballot}, leader {status.LeaderId}");
        // A backup elected leader: the primary is gone. A sync still waiting for it would only time out.
        if (_leader && _role == ReplicaRole.Backup && _syncing && !_joining) Do(ReplicaActionKind.CloseSyncConnection);
    }

    /// <summary>This backup won an election and applied its own ROLE entry: release what it holds and serve.</summary>
    private void Promote(Ballot ballot)
    {
        if (_joining || _stateInvalid || _imagesStale)
        {
            string why = _joining ? "it was waiting for a full sync"
                : _stateInvalid ? "a sync failed after it began writing its RAM or disk"
                : "its drive images are not known to be its primary's: no sync has compared them yet";
            _log($"replica {_self}: LEADER in ballot {ballot} but this replica has no valid VM state ({why}): it does not serve and output stays held");
            return;
        }
        _role = ReplicaRole.Primary;
        _servingSince = ballot;
        Actions.Add(ReplicaAction.SetSyncRole(SyncRole.Primary));
        Do(ReplicaActionKind.CloseSyncConnection);   // it led to the deposed primary; the sync link accepts the next one
        _runsAlone = true;
        _backupId = 0;
        _nextSyncFull = true;
        Do(ReplicaActionKind.GuardPromote);
        if (_checkpointMode) Do(ReplicaActionKind.StartVm);   // the gate is open now: the guest runs on from the last checkpoint
        Do(ReplicaActionKind.Announce);
        StartIdleMonitor();
        Volatile.Write(ref _promotions, _promotions + 1);
        Event($"promoted to primary in ballot {ballot}");
        _log($"replica {_self}: PROMOTED to primary in ballot {ballot}: released its held frames, " +
             "announced the guest's MAC; running without a backup until one joins");
    }

    /// <summary>Deposed as leader. The driver fenced the guard already, on the consensus thread (nothing may be
    /// released from the moment consensus knows); fencing again here is a no-op for the guard.</summary>
    private void Fenced(Fence fence)
    {
        if (_role != ReplicaRole.Primary || fence.Ballot < _servingSince) return;
        Do(ReplicaActionKind.GuardFence, $"deposed: no longer leader of ballot {fence.Ballot} ({fence.Reason})");
        _fenced = true;
        CountFence($"deposed as leader of ballot {fence.Ballot}: {fence.Reason}");
        Event($"fenced in ballot {fence.Ballot}: {fence.Reason}");
        if (fence.Reason == FenceReason.LostQuorum) BecomeStandby($"lost its quorum as leader of ballot {fence.Ballot}");
        else BecomeJoining($"deposed as leader of ballot {fence.Ballot}");
    }

    /// <summary>
    /// A primary that lost its quorum. Nobody need have replaced it (if it ran alone, nobody could: the ROLE entry
    /// that dropped its backup bars that node from leading), and its VM has applied every entry it knows to be
    /// committed. So it stays a backup with its VM state and may campaign: elected again, it serves on at its own
    /// ROLE entry; a ROLE entry naming another primary makes it join as usual. Held output is discarded either way.
    /// </summary>
    private void BecomeStandby(string why)
    {
        if (_role != ReplicaRole.Primary || _joining) return;
        if (_syncing)
        {
            _demoteWhenIdle = Demotion.Standby;
            _demoteWhy = why;
            Do(ReplicaActionKind.CloseSyncConnection);   // the sync in flight aborts; SyncFinished comes back here
            return;
        }
        StopIdleMonitor();
        Do(ReplicaActionKind.GuardDemote);
        _role = ReplicaRole.Backup;
        Actions.Add(ReplicaAction.SetSyncRole(SyncRole.Backup));
        Do(ReplicaActionKind.CloseSyncConnection);   // the link to its backup: whoever leads next syncs that node as a joining one
        _runsAlone = false;
        _backupId = 0;
        _fenced = false;
        _ranSinceSync = true;   // it ran as the primary
        if (_checkpointMode) Do(ReplicaActionKind.StopVm);   // a checkpoint backup's VM never runs; its RAM is kept
        Do(ReplicaActionKind.StartVm);   // a sync this primary aborted may have left the VM stopped; its RAM is intact
        Volatile.Write(ref _demotions, _demotions + 1);
        Event($"standby: {why}");
        _log($"replica {_self}: {why}: its held output is discarded; it keeps its VM as a standby backup " +
             "and may be elected again (a new primary's ROLE entry makes it join instead)");
    }

    /// <summary>This replica's VM state is no longer usable (deposed, or dropped as backup): stop the VM, discard
    /// held output, and wait as a backup for the primary's full sync.</summary>
    private void BecomeJoining(string why)
    {
        if (_joining) return;
        if (_syncing)
        {
            _demoteWhenIdle = Demotion.Joining;
            _demoteWhy = why;
            Do(ReplicaActionKind.CloseSyncConnection);   // the sync in flight aborts; SyncFinished comes back here
            return;
        }
        bool wasPrimary = _role == ReplicaRole.Primary;
        StopIdleMonitor();
        Do(ReplicaActionKind.StopVm);
        Do(ReplicaActionKind.GuardDemote);
        _role = ReplicaRole.Backup;
        Actions.Add(ReplicaAction.SetSyncRole(SyncRole.Backup));
        _joining = true;
        _runsAlone = false;
        _backupId = 0;
        Actions.Add(ReplicaAction.SetCanCampaign(false));
        if (wasPrimary) Volatile.Write(ref _demotions, _demotions + 1);
        Event($"joining: {why}");
        _log($"replica {_self}: {why}: the VM is stopped and its held output discarded; rejoining as backup " +
             "(waits for the primary's full sync)");
        StartJoin();
    }

    /// <summary>Wait (on the engine's thread) for the primary's next sync and take it.</summary>
    private void StartJoin()
    {
        _syncing = _heldAtCut = true;
        _syncsInFlight++;
        Actions.Add(ReplicaAction.RunSync(SyncRequest.Join));
    }

    /// <summary>The join sync applied: this replica has the primary's state at the cut.</summary>
    private void FinishJoin(in SyncResult result)
    {
        _joining = false;
        _fenced = false;
        _skipThrough = result.LogIndex;
        if (result.NextCheckpoint != _checkpointMode)
        {
            // The log before the cut is not this replica's to read: the primary says which mode follows it.
            _checkpointMode = result.NextCheckpoint;
            _policy?.ModeChanged(_checkpointMode);
            Event($"mode {(_checkpointMode ? "checkpoint" : "replicate")} adopted from the primary at the join");
            // Into replication: the checkpoint gate held the VM when the engine resumed it. (Into checkpointing the
            // engine did not start it: SyncStats.NextCheckpoint.)
            if (!_checkpointMode) Do(ReplicaActionKind.StartVm);
        }
        _ranSinceSync = !_checkpointMode;
        _epochInputBytes = 0;
        Volatile.Write(ref _lastAppliedIndex, Math.Max(_lastAppliedIndex, result.LogIndex));
        Volatile.Write(ref _lastSyncEpoch, Math.Max(_lastSyncEpoch, result.Epoch));
        Volatile.Write(ref _inputDigest, result.InputDigest);
        Volatile.Write(ref _inputsAtLastSync, InputsTaken);
        Do(ReplicaActionKind.InstallSnapshot, result.LogIndex);   // a node with no log: entries before the cut are not needed
        Actions.Add(ReplicaAction.SetCanCampaign(true));
        Volatile.Write(ref _joins, _joins + 1);
        Event($"joined at sync e{result.Epoch} (log index {result.LogIndex})");
        _log($"replica {_self}: JOINED as backup at sync e{result.Epoch} (log index {result.LogIndex}): " +
             $"{result.DivergentPages} of {result.UnionPages} pages came from the primary");
    }

    /// <summary>A fresh backup whose images were stale completed its first sync: its state is the primary's now,
    /// and it may take over.</summary>
    private void ImagesCurrent(ulong epoch)
    {
        _imagesStale = false;
        Actions.Add(ReplicaAction.SetCanCampaign(true));
        Event($"images current at sync e{epoch}: may take over");
        _log($"replica {_self}: sync e{epoch} rewrote this backup's stale drive images: it may take over from now on");
    }

    /// <summary>Primary: the full sync with a (re)joined backup completed: say so in the log.</summary>
    private void FinishReprotection()
    {
        _runsAlone = false;
        _aloneProposed = false;
        Do(ReplicaActionKind.GuardProtect);   // normally already holding since the backup connected, unless it went away in between
        Event($"protected again by node {_peer}");
        _log($"replica {_self}: PROTECTED again: node {_peer} is synced");
        Actions.Add(ReplicaAction.ProposeRole(_peer, ProposalPurpose.Reprotect));
    }

    /// <summary>One more fence, and why (operators see it as the QMP event PLOVER_FENCED).</summary>
    private void CountFence(string why)
    {
        Volatile.Write(ref _lastFenceReason, why);
        Volatile.Write(ref _fences, _fences + 1);
    }

    private void StartIdleMonitor()
    {
        if (IdleMonitorRunning || !_hasIdleMonitor) return;
        IdleMonitorRunning = true;
        Do(ReplicaActionKind.StartIdleMonitor);
    }

    private void StopIdleMonitor()
    {
        if (!IdleMonitorRunning) return;
        IdleMonitorRunning = false;
        _idleRearmAt = _idleCheckAt = null;
        Do(ReplicaActionKind.StopIdleMonitor);
    }
}
