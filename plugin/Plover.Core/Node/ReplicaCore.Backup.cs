using Plover.Idle;

namespace Plover.Node;

// Time, the idle trigger and the primary's watch over its backup.
public sealed partial class ReplicaCore
{
    private long? _idleRearmAt;     // re-arm the idle monitor then (after an aborted sync)
    private long? _idleCheckAt;     // then, re-arm it if the sync it proposed never came (the proposal was lost)
    private ulong _idleCheckEpoch;
    private long? _joinRetryAt;     // retry a join that found no primary sync
    private long _lastConnections;  // the connection the primary last took as its backup's (0: none yet)
    private long? _linkDownSince;   // when the backup stopped answering
    private bool _aloneProposed;    // ROLE(self, no backup) proposed for this loss

    private void Tick(long now, bool backupAnswering, bool guardHolding)
    {
        _now = now;
        if (_idleRearmAt <= now)
        {
            _idleRearmAt = null;
            if (IdleMonitorRunning) Do(ReplicaActionKind.RearmIdleMonitor);
        }
        if (_idleCheckAt <= now)
        {
            _idleCheckAt = null;
            if (IdleMonitorRunning && _lastSyncEpoch < _idleCheckEpoch) Do(ReplicaActionKind.RearmIdleMonitor);
        }
        if (_joinRetryAt <= now)
        {
            _joinRetryAt = null;
            if (_joining && !_syncing) StartJoin();
        }
        WatchBackup(now, backupAnswering, guardHolding);
    }

    /// <summary>
    /// The primary's link to its backup: a new sync connection means a (re)joined backup, which gets a full sync at
    /// once (and protection back); a backup gone for <see cref="ReplicaOptions.BackupLoss"/> is dropped by a ROLE
    /// entry, after which output leaves unprotected.
    /// </summary>
    private void WatchBackup(long now, bool backupAnswering, bool guardHolding)
    {
        if (_role != ReplicaRole.Primary || _fenced || !_leader) { _linkDownSince = null; return; }
        if (_linkUp && _connections != _lastConnections)
        {
            // The backup behind a new connection may have restarted: the next sync compares every page, at once.
            // Not so for the first connection of a fresh cluster: its first sync is full anyway and comes with the
            // first idle moment.
            bool first = _lastConnections == 0 && !_runsAlone;
            _lastConnections = _connections;
            _linkDownSince = null;
            if (first) return;
            _nextSyncFull = true;
            if (_runsAlone) Do(ReplicaActionKind.GuardProtect);   // from here the output waits for the joining backup's ack
            if (!TryProposeSync(ProposalPurpose.NewBackupSync)) _lastConnections = 0;   // retried on the next tick
            return;
        }
        // A partitioned backup leaves its connections looking up: consensus tells whether it still answers.
        if (_linkUp && backupAnswering) { _linkDownSince = null; return; }
        // A fresh cluster's backup that has not connected yet is not lost (the start-up gate waits for it).
        if (_connections == 0 && !_runsAlone) return;
        if (_linkDownSince is not { } since) { _linkDownSince = now; return; }
        if (now - since < _backupLossMs) return;
        if (_runsAlone)
        {
            // A backup that was joining went away before its full sync: output must not wait for it.
            if (guardHolding) Do(ReplicaActionKind.GuardRunUnprotected, "the joining backup went away");
            return;
        }
        if (_aloneProposed) return;
        // A sync waiting for the lost backup would hold the VM stopped until its frame timeout: abort it now.
        Do(ReplicaActionKind.CloseSyncConnection);
        Actions.Add(ReplicaAction.ProposeRole(0, ProposalPurpose.RunAlone));
        _aloneProposed = true;
        Event($"backup lost for {now - since} ms: ROLE(no backup) proposed");
        _log($"replica {_self}: the backup has been unreachable for {now - since} ms: proposing to run " +
             "without it (output is released unprotected once that commits)");
    }

    /// <summary>
    /// An idle guest that received no input and sent no output since the last sync has nothing new to make safe, so
    /// it is not stopped again (a guest idle for minutes would otherwise be stopped every few hundred microseconds);
    /// the maximum epoch always syncs. Re-arms the monitor when no sync will follow.
    /// </summary>
    private void IdleTrigger(SyncTrigger trigger)
    {
        if (!IdleMonitorRunning) return;
        bool nothingNew = trigger == SyncTrigger.Idle && _firstSyncDone && InputsTaken == _inputsAtLastSync &&
                          _outputReports == _outputReportsAtCut;
        if (nothingNew || _runsAlone || !TryProposeSync(ProposalPurpose.IdleSync))
        {
            if (nothingNew) Volatile.Write(ref _triggersNothingNew, _triggersNothingNew + 1);
            else Volatile.Write(ref _triggersRefused, _triggersRefused + 1);
            Do(ReplicaActionKind.RearmIdleMonitor);
            return;
        }
        if (trigger == SyncTrigger.Idle) Volatile.Write(ref _triggersIdle, _triggersIdle + 1);
        else Volatile.Write(ref _triggersMaxEpoch, _triggersMaxEpoch + 1);
        // A proposal can still be lost (leadership lost before it committed): then no sync would ever re-arm the monitor.
        _idleCheckAt = _now + _retryAfterAbortMs * 4;
        _idleCheckEpoch = _proposedEpoch;
    }

    /// <summary>Proposes a SYNC entry with the next epoch. False if this replica cannot: not the primary, not the
    /// consensus leader, fenced, or without a sync connection to a backup (the sync would abort).</summary>
    private bool TryProposeSync(ProposalPurpose purpose)
    {
        if (_role != ReplicaRole.Primary || _fenced || !_leader || !_linkUp) return false;
        ulong epoch = Math.Max(_lastSyncEpoch, _proposedEpoch) + 1;
        _proposedEpoch = epoch;
        Actions.Add(ReplicaAction.ProposeSync(epoch, purpose, NextModeToPropose));
        return true;
    }

    private void ProposalRefused(ProposalPurpose purpose)
    {
        switch (purpose)
        {
            case ProposalPurpose.IdleSync:
                Volatile.Write(ref _triggersRefused, _triggersRefused + 1);
                _idleCheckAt = null;
                if (IdleMonitorRunning) Do(ReplicaActionKind.RearmIdleMonitor);
                break;
            case ProposalPurpose.NewBackupSync:
                _lastConnections = 0;   // the next tick tries again
                break;
            case ProposalPurpose.RunAlone:
                _aloneProposed = false;
                break;
        }
    }
}
