using Plover.Consensus;
using Plover.Hashing;
using Plover.Idle;
using Plover.Sync;

namespace Plover.Node;

/// <summary>
/// The replica's decisions (see <see cref="Replica"/> for what it does) as a pure state machine, like the consensus
/// core: <see cref="Step"/> takes a <see cref="ReplicaEvent"/> and appends <see cref="ReplicaAction"/>s to
/// <see cref="Actions"/>, which the caller executes in order and clears. No threads, no clock (time comes in Tick
/// events), no I/O. Owned by one thread (QEMU's main thread, through <see cref="Replica"/>); other threads read only
/// the volatile role flags and the counters behind <see cref="Replica"/>'s properties (status, metrics, the input path).
/// </summary>
public sealed partial class ReplicaCore
{
    /// <summary>Committed entries applied per step (a backlog must not hold QEMU's main loop).</summary>
    public const int MaxEntriesPerStep = 256;

    private readonly int _self, _peer, _nics;
    private readonly bool _firstSyncFull, _hasIdleMonitor;
    private readonly long _backupLossMs, _retryAfterAbortMs;
    private readonly Action<string> _log;
    private readonly Queue<LogEntry> _pending = new();     // committed, not applied yet
    private readonly List<ReadOnlyMemory<byte>> _frames = new();   // a decoded INPUT batch

    // What the core was told.
    private bool _leader;
    private Ballot _ballot;
    private bool _linkUp;
    private long _connections;   // connections the sync link ever made
    private bool _stateInvalid;  // the engine failed a sync after it began writing RAM or disk
    private bool _imagesStale;   // a fresh backup whose drive images are not its primary's until its first sync
    private long _now;           // ms, from the last Tick

    // The mode (docs: README "Adaptive mode"). Changed only by a committed SYNC entry that names the next mode, at
    // its cut, on both replicas alike (and by a join, which adopts the primary's).
    private volatile bool _checkpointMode;   // read by the input path and the backup's VM gate
    private readonly ModePolicy? _policy;    // adaptive: which mode the primary proposes next
    private bool _ranSinceSync;              // backup: its VM may have run since its last completed sync
    private long _epochInputBytes;           // INPUT payload bytes applied since the last cut (adaptive accounting)
    private long _modeSwitches, _switchesToCheckpoint;

    // Roles (volatile: read by the driver's other threads).
    private volatile ReplicaRole _role;
    private volatile bool _joining;
    private volatile bool _runsAlone;   // a primary without a backup: output unprotected (or about to be)
    private volatile bool _fenced;      // deposed as primary, not yet a backup again
    private volatile int _backupId;     // the primary's backup per the last ROLE entry (0: none)
    private volatile bool _started;
    private Ballot _servingSince;       // the ballot this node was promoted in (older fences are stale)

    // Applying the log.
    private bool _syncing;          // a sync or a join runs
    private bool _heldAtCut;        // the VM stopped at a SYNC entry (or joins): later entries wait
    private int _syncsInFlight;     // two when a SYNC commits while an early-resumed sync runs
    private long _cutIndex;         // log index of the latest SYNC entry this replica stopped at
    private long _skipThrough;      // entries up to here are covered by a joined state: not applied
    private ulong _inputDigest;     // chain over (index, payload) of every INPUT injected
    private ulong _lastSyncEpoch, _proposedEpoch;
    private bool _firstSyncDone, _nextSyncFull;
    private Demotion _demoteWhenIdle;   // a demotion that waits for the sync in flight to end
    private string _demoteWhy = "";

    // Counters (written here only; read elsewhere with Volatile.Read).
    private long _lastAppliedIndex, _inputsInjected, _framesPassed, _inputsAtLastSync;
    private long _outputReports, _outputReportsAtCut;
    private long _triggersIdle, _triggersMaxEpoch, _triggersNothingNew, _triggersRefused;
    private long _promotions, _demotions, _joins, _inputDivergences;
    private long _fences;
    private string _lastFenceReason = "";

    private enum Demotion : byte { None, Standby, Joining }

    public ReplicaCore(ReplicaOptions options, int selfId, int nicCount, ConsensusStatus consensus)
    {
        if (options.Role == ReplicaRole.Primary && options.Joining) throw new ArgumentException("a joining replica is a backup");
        _self = selfId;
        _peer = options.PeerId;
        _nics = nicCount;
        _checkpointMode = options.Sync.Checkpoint;
        _ranSinceSync = !_checkpointMode;
        if (options.Adaptive is { } adaptive) _policy = new ModePolicy(adaptive, _checkpointMode);
        _firstSyncFull = options.FirstSyncFull;
        _hasIdleMonitor = options.VcpuThreadIds is not null && options.Idle is not null;
        _backupLossMs = (long)options.BackupLoss.TotalMilliseconds;
        _retryAfterAbortMs = (long)options.RetryAfterAbort.TotalMilliseconds;
        _log = options.Log;
        _role = options.Role;
        _joining = options.Joining;
        _imagesStale = options.ImagesStale && !options.Joining;
        if (options.ImagesStale && options.Role == ReplicaRole.Primary) throw new ArgumentException("stale images are a backup's");
        _backupId = options.Role == ReplicaRole.Primary ? options.PeerId : 0;
        _leader = consensus.Role == ConsensusRole.Leader;
        _ballot = consensus.Ballot;
    }

    /// <summary>What the last steps asked for, in order: execute, then clear.</summary>
    public List<ReplicaAction> Actions { get; } = new();

    public ReplicaRole Role => _role;
    public bool IsJoining => _joining;
    public bool IsFenced => _fenced;
    public bool IsStarted => _started;
    public bool RunsAlone => _role == ReplicaRole.Primary && _runsAlone;
    public int BackupId => _backupId;
    /// <summary>The start-up gate may start the guest: no sync runs (its resume starts the VM) and not joining.</summary>
    public bool GuestMayStart => !_syncing && !_joining;
    public bool IdleMonitorRunning { get; private set; }
    /// <summary>The mode now: checkpointing (inputs straight into the primary's guest, the backup's VM held stopped)
    /// or replication. Any thread.</summary>
    public bool CheckpointMode => _checkpointMode;
    /// <summary>Adaptive mode is on (a policy proposes switches).</summary>
    public bool Adaptive => _policy is not null;
    /// <summary>The adaptive policy's last window: replication bytes / checkpoint bytes (0: none yet; main thread).</summary>
    public double AdaptiveRatio => _policy?.LastRatio ?? 0;
    /// <summary>Mode switches applied (committed SYNC entries that changed it), and how many went to checkpointing.</summary>
    public (long Total, long ToCheckpoint) ModeSwitches => (Volatile.Read(ref _modeSwitches), Volatile.Read(ref _switchesToCheckpoint));
    public ulong LastSyncEpoch => Volatile.Read(ref _lastSyncEpoch);
    public long LastAppliedIndex => Volatile.Read(ref _lastAppliedIndex);
    public long InputsInjected => Volatile.Read(ref _inputsInjected);
    public long FramesPassed => Volatile.Read(ref _framesPassed);
    public ulong InputDigest => Volatile.Read(ref _inputDigest);
    public long InputDivergences => Volatile.Read(ref _inputDivergences);
    public (long Idle, long MaxEpoch, long NothingNew, long Refused) SyncTriggers =>
        (Volatile.Read(ref _triggersIdle), Volatile.Read(ref _triggersMaxEpoch),
         Volatile.Read(ref _triggersNothingNew), Volatile.Read(ref _triggersRefused));
    public (long Promotions, long Demotions, long Joins) RoleChanges =>
        (Volatile.Read(ref _promotions), Volatile.Read(ref _demotions), Volatile.Read(ref _joins));
    /// <summary>Times this replica was fenced as primary (deposed, or named no longer primary by a ROLE entry), and
    /// why the last time: a fence and its standby can both happen in one step, so the flag alone may never be seen.</summary>
    public long Fences => Volatile.Read(ref _fences);
    public string LastFenceReason => Volatile.Read(ref _lastFenceReason);
    /// <summary>Committed entries waiting (held at a cut, joining, or not started).</summary>
    public int PendingEntries => _pending.Count;
    /// <summary>Syncs queued on the engine and not finished.</summary>
    public int SyncsInFlight => _syncsInFlight;
    /// <summary>The VM is held at a SYNC entry (or joins): committed entries wait.</summary>
    public bool HeldAtCut => _heldAtCut;
    public string Describe() => _joining ? "joining backup (waits for the primary's full sync)" : _role.ToString().ToLowerInvariant();

    public void Step(in ReplicaEvent e)
    {
        switch (e.Kind)
        {
            case ReplicaEventKind.Start: Start(); break;
            case ReplicaEventKind.Committed:
                _pending.Enqueue(e.Entry);
                Apply();
                break;
            case ReplicaEventKind.Continue: Apply(); break;
            case ReplicaEventKind.SyncFinished: SyncFinished(e.Request!, e.Result); break;
            case ReplicaEventKind.ResumedEarly: ResumedEarly(e.Request!); break;
            case ReplicaEventKind.ConsensusChanged: ConsensusChanged(e.Status!); break;
            case ReplicaEventKind.Fenced: Fenced(e.Fence); break;
            case ReplicaEventKind.Link:
                _linkUp = e.Flag;
                _connections = e.Value;
                break;
            case ReplicaEventKind.Tick: Tick(e.Value, backupAnswering: e.Flag, guardHolding: e.Flag2); break;
            case ReplicaEventKind.IdleTrigger: IdleTrigger(e.Trigger); break;
            case ReplicaEventKind.SyncRequested: TryProposeSync(ProposalPurpose.RequestedSync); break;
            case ReplicaEventKind.ProposalRefused: ProposalRefused(e.Purpose); break;
            case ReplicaEventKind.OutputHeld: Volatile.Write(ref _outputReports, _outputReports + 1); break;
            case ReplicaEventKind.FramePassed: Volatile.Write(ref _framesPassed, _framesPassed + 1); break;
        }
    }

    private void Start()
    {
        if (_started) return;
        Do(ReplicaActionKind.StartGuard);
        if (_role == ReplicaRole.Primary) StartIdleMonitor();
        _started = true;
        if (_joining) StartJoin();
        else Apply();
        Event($"started as {Describe()}");
    }

    // ------------------------------------------------------------------ committed entries, in log order

    /// <summary>Applies waiting entries in order until none is left, a SYNC stops the VM, or the step's budget is spent.</summary>
    private void Apply()
    {
        // A joining backup applies nothing until its join sync: that state covers every entry up to its cut, and
        // a SYNC entry run as an ordinary sync in between (the join retries after an abort) would take the
        // primary's full sync without ending the join.
        if (!_started || _heldAtCut || _joining) return;
        int budget = MaxEntriesPerStep;
        while (_pending.TryDequeue(out var entry))
        {
            if (entry.Index <= _skipThrough) continue;   // covered by the state this replica joined with
            switch (entry.Type)
            {
                case EntryType.Input:
                    Inject(entry);
                    break;
                case EntryType.Sync:
                    if (BeginSync(entry)) return;
                    break;
                case EntryType.Role:
                    ApplyRole(entry);
                    break;
            }
            Volatile.Write(ref _lastAppliedIndex, entry.Index);
            if (_heldAtCut) return;   // a role change started a join
            if (--budget == 0)
            {
                if (_pending.Count > 0) Do(ReplicaActionKind.Yield);   // the rest in the next step, in order
                return;
            }
        }
    }

    private void Inject(in LogEntry entry)
    {
        _epochInputBytes += entry.Payload.Length;
        if (_checkpointMode && _role == ReplicaRole.Backup)
        {
            // Checkpointing: the backup's VM does not run (its state comes from the primary's checkpoints). INPUT
            // entries here were proposed before a switch's cut reached the primary; its guest takes them, and the
            // digest is chained on both sides alike.
            Volatile.Write(ref _inputDigest, ChainDigest(_inputDigest, entry.Index, entry.Payload.Span));
            return;
        }
        _frames.Clear();
        int nic;
        try { nic = EntryPayloads.DecodeInput(entry.Payload, _frames); }
        catch (FormatException e)
        {
            _log($"replica {_self}: INPUT entry {entry.Index} is malformed ({e.Message}); skipped on every replica alike");
            return;
        }
        if (nic >= _nics)
        {
            _log($"replica {_self}: INPUT entry {entry.Index} names NIC {nic}, this VM has {_nics}; skipped");
            return;
        }
        foreach (var frame in _frames) Actions.Add(ReplicaAction.Inject(nic, frame));
        Volatile.Write(ref _inputsInjected, _inputsInjected + 1);
        Volatile.Write(ref _inputDigest, ChainDigest(_inputDigest, entry.Index, entry.Payload.Span));
    }

    /// <summary>A committed SYNC. True if the VM was stopped and a sync started (applying pauses).</summary>
    private bool BeginSync(in LogEntry entry)
    {
        ulong epoch;
        SyncModeChange change;
        try { (epoch, change) = EntryPayloads.DecodeSyncWithMode(entry.Payload.Span); }
        catch (FormatException e)
        {
            _log($"replica {_self}: SYNC entry {entry.Index} is malformed ({e.Message}); skipped");
            return false;
        }
        if (epoch <= _lastSyncEpoch) return false;   // a duplicate proposal: the first one with this epoch counted
        Volatile.Write(ref _lastSyncEpoch, epoch);
        // The sync at this entry runs in the mode before it; everything after the cut (the inputs the primary takes,
        // whether the backup's VM runs, the next sync) in the mode it names, on both replicas, whether or not the
        // sync itself completes or runs at all.
        bool before = _checkpointMode;
        bool after = change switch { SyncModeChange.Checkpoint => true, SyncModeChange.Replicate => false, _ => before };
        long inputBytes = _epochInputBytes;
        _epochInputBytes = 0;
        if (after != before) SwitchMode(after, entry.Index, epoch);
        if (_role == ReplicaRole.Primary && !_linkUp)
        {
            _log($"replica {_self}: SYNC e{epoch} at {entry.Index} skipped: no sync connection to the backup");
            return false;
        }
        // A backup always runs it: the primary proposed it with the link up, and this side's end of a link that
        // has just been established may register a moment later (the engine waits for it).
        // Every entry before this one was injected in this step (or an earlier one) and none after it will be
        // until the sync is over: both VMs stop at the same log position.
        _syncing = _heldAtCut = true;
        _syncsInFlight++;
        _cutIndex = entry.Index;
        Volatile.Write(ref _inputsAtLastSync, InputsTaken);
        _outputReportsAtCut = _outputReports;
        Volatile.Write(ref _lastAppliedIndex, entry.Index);
        bool full = (!_firstSyncDone && _firstSyncFull) || _nextSyncFull;
        Do(ReplicaActionKind.StopVm);
        Actions.Add(ReplicaAction.RunSync(new SyncRequest(epoch, entry.Index, FullSync: full, InputDigest: _inputDigest)
        {
            Checkpoint = before, NextCheckpoint = after, BackupOwnDirt = before && _role == ReplicaRole.Backup && _ranSinceSync,
            InputBytes = inputBytes,
        }));
        return true;
    }

    /// <summary>A committed SYNC entry named another mode: from this cut on, both replicas run in it.</summary>
    private void SwitchMode(bool checkpoint, long index, ulong epoch)
    {
        _checkpointMode = checkpoint;
        _policy?.ModeChanged(checkpoint);
        Volatile.Write(ref _modeSwitches, _modeSwitches + 1);
        if (checkpoint) Volatile.Write(ref _switchesToCheckpoint, _switchesToCheckpoint + 1);
        string mode = checkpoint ? "checkpoint" : "replicate";
        Event($"mode {mode} from sync e{epoch} (log index {index})");
        _log($"replica {_self}: MODE {mode.ToUpperInvariant()} from sync e{epoch} at log index {index}" +
             (checkpoint ? (_role == ReplicaRole.Backup ? ": this backup's VM stops after the sync; the primary's checkpoints carry its state"
                                                        : ": inputs go straight into the guest; syncs send every dirty page")
                         : (_role == ReplicaRole.Backup ? ": this backup's VM executes the log's inputs again after the sync"
                                                        : ": inputs go through consensus again")));
    }

    /// <summary>Primary, adaptive: what a completed sync cost, for the policy.</summary>
    private void RecordCost(SyncRequest request, in SyncResult result)
    {
        if (_policy is null || _role != ReplicaRole.Primary || request.IsJoin || result.FullSync || !result.Completed) return;
        if (request.Checkpoint == true) { _policy.Checkpointed(); }
        else
        {
            // Replication's cost: the sync link's frames and the epoch's INPUT entries, which the leader sends to
            // both followers; checkpointing's: every page the primary dirtied (page number and contents), the whole
            // device state and the primary's bitmap.
            long replicate = result.WireBytes + 2 * request.InputBytes;
            long checkpoint = (long)result.PrimaryDirtyPages * (GuestRamBlock.PageSize + 8) + result.DeviceStateBytes + result.BitmapBytes;
            _policy.Replicated(replicate, checkpoint);
        }
        if (_policy.Wanted != _checkpointMode && _policy.Reason != _lastPolicyReason)
        {
            _lastPolicyReason = _policy.Reason;
            Event($"adaptive: wants {(_policy.Wanted ? "checkpoint" : "replicate")}: {_policy.Reason}");
            _log($"replica {_self}: adaptive mode wants {(_policy.Wanted ? "checkpointing" : "replication")}: {_policy.Reason} (proposed with the next SYNC entry)");
        }
    }

    private string _lastPolicyReason = "";

    /// <summary>The mode the next SYNC proposal names (None: no change).</summary>
    private SyncModeChange NextModeToPropose =>
        _policy is { } p && p.Wanted != _checkpointMode ? (p.Wanted ? SyncModeChange.Checkpoint : SyncModeChange.Replicate) : SyncModeChange.None;

    /// <summary>A sync or join ended; on the primary its VM runs again already (the engine restarted it).</summary>
    private void SyncFinished(SyncRequest request, SyncResult result)
    {
        _stateInvalid = result.StateInvalid;
        bool completed = result.Completed;
        RecordCost(request, result);
        // Backup: did its VM run since its last completed sync? (It resumes after this sync only in replication.)
        if (completed || !_checkpointMode) _ranSinceSync = !_checkpointMode;
        if (completed)
        {
            if (result.FullSync) _nextSyncFull = false;
            _firstSyncDone = true;
            if (_imagesStale) ImagesCurrent(result.Epoch);   // (a stale backup is never promoted, see Promote)
            if (!result.Joined) Do(ReplicaActionKind.Compact, request.LogIndex);   // the VM state covers everything up to the SYNC entry
        }
        else if (!request.IsJoin)
            _log($"replica {_self}: sync e{request.Epoch} at {request.LogIndex} aborted: {result.Error}");
        if (IdleMonitorRunning && !request.IsJoin)
        {
            if (completed) Do(ReplicaActionKind.RearmIdleMonitor);
            else _idleRearmAt = _now + _retryAfterAbortMs;   // no stop/start churn while the backup is away
        }
        bool last = --_syncsInFlight == 0;   // else a later SYNC entry holds the VM at its cut already
        if (last) _syncing = _heldAtCut = false;
        if (completed && result.InputsDiverged)
        {
            Volatile.Write(ref _inputDivergences, _inputDivergences + 1);
            Volatile.Write(ref _inputDigest, result.InputDigest);   // the primary's: the next cut compares equal again
            Event($"inputs diverged before sync e{result.Epoch}: resynchronised every page");
        }
        if (request.IsJoin)
        {
            if (completed && result.LogIndex < _lastAppliedIndex)
            {
                // The primary's cut is older than entries this replica consumed before it began to join; those are
                // not delivered again, so that state would lack them (found by the replica simulation, seed 2822).
                _log($"replica {_self}: the join brought the primary's state at log index {result.LogIndex}, but this replica " +
                     $"consumed the log through {_lastAppliedIndex}: it waits for the primary's next sync");
                Do(ReplicaActionKind.StopVm);
                StartJoin();
                return;
            }
            if (completed) FinishJoin(result);
            else if (_joining)
            {
                _joinRetryAt = _now + _retryAfterAbortMs;   // no primary sync yet (or it failed): the VM stays stopped
                return;
            }
        }
        else if (completed && _role == ReplicaRole.Primary && result.FullSync && _runsAlone)
            FinishReprotection();
        else if (!completed && !_joining && !_fenced && last)
            Do(ReplicaActionKind.StartVm);   // the engine restarts the VM only once its own stop step ran
        if (_demoteWhenIdle != Demotion.None)
        {
            var demotion = _demoteWhenIdle;
            _demoteWhenIdle = Demotion.None;
            if (demotion == Demotion.Standby) BecomeStandby(_demoteWhy);
            else BecomeJoining(_demoteWhy);
            return;
        }
        Apply();
    }

    /// <summary>The primary's guest resumed while the sync of the latest cut goes on from its snapshot; entries after
    /// the cut may enter the guest (their output is held for the next sync).</summary>
    private void ResumedEarly(SyncRequest request)
    {
        if (request.LogIndex != _cutIndex || !_heldAtCut || _joining) return;
        _heldAtCut = false;
        Apply();
    }

    /// <summary>Inputs this guest took so far (INPUT entries, or frames let through in checkpoint mode).</summary>
    private long InputsTaken => _inputsInjected + _framesPassed;

    private void Do(ReplicaActionKind kind) => Actions.Add(ReplicaAction.Simple(kind));
    private void Do(ReplicaActionKind kind, long index) => Actions.Add(ReplicaAction.AtIndex(kind, index));
    private void Do(ReplicaActionKind kind, string text) => Actions.Add(ReplicaAction.WithText(kind, text));
    private void Event(string what) => Do(ReplicaActionKind.Event, what);

    /// <summary>digest' = CityHash64(digest | index | CityHash64(payload)), all little-endian u64.</summary>
    private static ulong ChainDigest(ulong digest, long index, ReadOnlySpan<byte> payload)
    {
        Span<ulong> words = [digest, (ulong)index, CityHash.Hash64(payload)];
        return CityHash.Hash64(System.Runtime.InteropServices.MemoryMarshal.AsBytes(words));
    }
}
