using System.Collections.Concurrent;
using System.Diagnostics;
using Plover.Consensus;
using Plover.Guard;
using Plover.Hashing;
using Plover.Idle;
using Plover.Metrics;
using Plover.Sync;

namespace Plover.Node;

/// <summary>
/// One VM replica wired to consensus, syncvm, the output guard and the idle trigger (docs/architecture.md sections 2-4), through
/// its whole life: primary, backup, and the moves between them.
/// <list type="bullet">
/// <item>Frames going into the guest are stolen (<see cref="OnFrameToGuest"/>): the primary batches them into INPUT
///   proposals, a backup drops them (its guest gets the primary's inputs from the log).</item>
/// <item>Committed entries are applied on the main thread in log order, on both replicas: INPUT frames are injected;
///   a SYNC entry stops the VM in the same main-thread callback that injected everything before it, so both VMs stop
///   at exactly that log position, and then the <see cref="SyncEngine"/> runs (off the main thread). Entries after the
///   SYNC wait until the VM runs again. ROLE entries say who the primary is and whether it has a backup.</item>
/// <item>The primary proposes SYNC when the idle monitor says the guest is idle or the epoch is too long, and a full
///   SYNC as soon as a backup (re)connects. When the backup has been gone for <see cref="ReplicaOptions.BackupLoss"/>
///   it proposes ROLE(self, no backup); once that commits its output leaves unprotected (said loudly).</item>
/// <item>Failover: a backup elected leader is promoted when it applies its own ROLE entry (so it has applied
///   everything committed before its election, and knows whether it was dropped): output released, MAC announced,
///   idle trigger started. A deposed primary is fenced at once (no release can follow), then stops its VM, discards
///   what it held and rejoins as a joining backup. A primary that only lost its quorum (nobody need have replaced
///   it) discards what it held but keeps its VM as a standby backup that may be elected again.</item>
/// <item>Checkpoint mode (<see cref="SyncOptions.Checkpoint"/>, the Remus baseline and a mode for guests that diverge
///   too much): frames go straight into the primary's guest (no INPUT entries), the backup's VM never runs (a
///   <see cref="PassiveVmGate"/> holds it stopped until a promotion), and each sync sends every page the primary
///   dirtied. SYNC and ROLE entries, the guard and failover work as in replication.</item>
/// <item>Joining: a backup without a valid state (restarted, or deposed, or dropped by a ROLE entry) does not campaign
///   and injects nothing; it waits for the primary's next sync (always full; the primary learns of it when the sync
///   link connects), takes the cut from the primary, and is a backup again once that sync applied.</item>
/// </list>
/// This class is the driver: every decision above is <see cref="ReplicaCore"/>'s, a pure state machine stepped on the
/// host's main thread only. Callbacks from other threads (consensus, sync completion, idle monitor, the 20 ms
/// watchdog tick) only queue events for it; the actions it returns are executed here, on the main thread.
/// The consensus driver belongs to the caller, who starts it after constructing the replica (its callbacks are
/// taken here) and disposes it after the replica.
/// </summary>
public sealed class Replica : IDisposable
{
    /// <summary>Events stepped per main-thread callback (a backlog must not hold QEMU's main loop).</summary>
    private const int MaxEventsPerDrain = 256;
    private const int WatchdogMs = 20;

    private readonly ReplicaOptions _options;
    private readonly IReplicaHost _host;
    private readonly IVmHost _vm;           // the host's VM behind the checkpoint gate
    private readonly ConsensusDriver _driver;
    private readonly Action<string> _log;
    private readonly ReplicaCore _core;
    private readonly ReplicaInputBatcher _batcher;
    private readonly ConcurrentQueue<ReplicaEvent> _inbox = new();   // any thread -> the main thread
    private readonly Action _drain;   // cached: posted once per batch of events
    private readonly ProposalClock _proposalClock = new();
    private readonly SyncLeadClock _lead = new();
    private readonly Thread _watchdog;
    private readonly ManualResetEventSlim _stop = new();
    private IdleMonitor? _idle;       // main thread (the core starts and stops it)
    private int _drainPosted;
    private volatile bool _disposed;
    private bool _linkUp;             // main thread: what the core was last told of the sync link
    private long _linkConnections;
    private long _stoppedAt;          // main thread: Stopwatch time of the last StopVm action
    private Task _syncsReported = Task.CompletedTask;   // main thread: the last sync's end, reported
    private long _framesInjected, _injectFailures, _framesDroppedBackup, _syncsCompleted, _syncsAborted, _framesReleasedUnprotected;
    private readonly ReleaseLog _released = new();
    private readonly ConcurrentQueue<(long UnixUs, string What)> _events = new();

    public Replica(ReplicaOptions options, IReplicaHost host, ConsensusDriver driver)
    {
        _options = options;
        _host = host;
        _driver = driver;
        _log = options.Log;
        _drain = Drain;
        _core = new ReplicaCore(options, driver.SelfId, host.OutputPorts.Count, driver.Status);
        _vm = new PassiveVmGate(host.Vm, () => _core.CheckpointMode && _core.Role == ReplicaRole.Backup);
        bool primary = options.Role == ReplicaRole.Primary;
        Guard = new OutputGuard(primary ? GuardRole.Primary : GuardRole.Backup, host.OutputPorts, _log);
        var syncOptions = options.Sync.Log is null ? options.Sync with { Log = _log } : options.Sync;
        Engine = new SyncEngine(primary ? SyncRole.Primary : SyncRole.Backup, host.Memory, _vm, host.Main, Guard, syncOptions, host.Disks);
        Engine.ResumedEarly += request => Post(ReplicaEvent.ResumedEarly(request));
        _batcher = new ReplicaInputBatcher(options.MaxInputEntryBytes, options.MaxPendingInputBytes,
            payload => _proposalClock.ProposeInput(_driver, payload.Span));   // one delegate, made here: nothing per entry
        driver.Committed = OnCommitted;
        driver.StateChanged = status => Post(ReplicaEvent.ConsensusChanged(status));
        driver.Fenced = OnFenced;
        driver.SnapshotNeeded = s =>
        {
            if (!_core.IsJoining)
                _log($"replica {driver.SelfId}: the log before index {s.Index} is gone at leader {s.LeaderId}: this replica rejoins with a full sync");
        };
        if (options.Joining || options.ImagesStale) driver.SetCanCampaign(false);
        _watchdog = new Thread(Watchdog) { IsBackground = true, Name = "plover-replica-watchdog" };
    }

    public OutputGuard Guard { get; }
    public SyncEngine Engine { get; }
    public ReplicaRole Role => _core.Role;
    /// <summary>A backup without a valid state, waiting for the primary's full sync (it cannot take over).</summary>
    public bool IsJoining => _core.IsJoining;
    /// <summary><see cref="Start"/> ran: output is held and inputs are taken.</summary>
    public bool IsStarted => _core.IsStarted;
    /// <summary>Deposed as primary and not (yet) a backup again.</summary>
    public bool IsFenced => _core.IsFenced;
    /// <summary>A primary running without a backup (output unprotected).</summary>
    public bool RunsAlone => _core.RunsAlone;
    /// <summary>A primary's backup per the last ROLE entry applied (0: none).</summary>
    public int BackupId => _core.BackupId;
    public ulong LastSyncEpoch => _core.LastSyncEpoch;
    /// <summary>Index of the last committed entry applied to the guest (injected, or the SYNC the VM stopped at).</summary>
    public long LastAppliedIndex => _core.LastAppliedIndex;
    public long InputsInjected => _core.InputsInjected;
    public long FramesInjected => Volatile.Read(ref _framesInjected);
    /// <summary>Checkpoint mode: frames the primary let straight into its guest.</summary>
    public long FramesPassed => _core.FramesPassed;
    /// <summary>Checkpoint mode now (see the class summary; adaptive mode changes it at committed SYNC entries).</summary>
    public bool Checkpoint => _core.CheckpointMode;
    /// <summary>Adaptive mode is on.</summary>
    public bool Adaptive => _core.Adaptive;
    /// <summary>Mode switches applied, and how many of them went to checkpointing.</summary>
    public (long Total, long ToCheckpoint) ModeSwitches => _core.ModeSwitches;
    public long InjectFailures => Volatile.Read(ref _injectFailures);
    /// <summary>Primary: frames queued for proposal; dropped ones (backlog full, not leader) in <see cref="FramesDropped"/>.</summary>
    public long FramesStolen => _batcher.FramesQueued;
    public long FramesDropped => _batcher.FramesDropped + Volatile.Read(ref _framesDroppedBackup);
    public long SyncsCompleted => Volatile.Read(ref _syncsCompleted);
    public long SyncsAborted => Volatile.Read(ref _syncsAborted);
    /// <summary>Running digest of every INPUT entry injected so far, in log order (equal on both replicas at equal
    /// log positions); recorded per sync in <see cref="SyncStats.InputDigest"/>.</summary>
    public ulong InputDigest => _core.InputDigest;
    /// <summary>Backup: syncs whose cut found the primary's input digest different from this replica's (each resynchronised every page).</summary>
    public long InputDivergences => _core.InputDivergences;
    /// <summary>Primary: proposal-to-commit latency of INPUT entries.</summary>
    public LatencyHistogram CommitLatency => _proposalClock.Latency;
    public long EntriesProposed => _batcher.EntriesProposed;
    /// <summary>What the idle monitor asked for: syncs proposed because the guest idled or the epoch reached its
    /// maximum, idle moments skipped because nothing came in since the last sync, proposals refused.</summary>
    public (long Idle, long MaxEpoch, long NothingNew, long Refused) SyncTriggers => _core.SyncTriggers;
    /// <summary>Promotions to primary, demotions of a deposed primary, completed joins.</summary>
    public (long Promotions, long Demotions, long Joins) RoleChanges => _core.RoleChanges;
    /// <summary>Frames this node let out, by consensus term (the split-brain check: one node per term).</summary>
    public IReadOnlyDictionary<long, long> ReleasedByTerm => _released.Windows().ToDictionary(w => w.Term, w => w.Frames);
    /// <summary>When this node let frames out, per term (the split-brain check across terms).</summary>
    public ReleaseLog.Window[] ReleaseWindows => _released.Windows();
    /// <summary>Times fenced as primary, and why the last time (<see cref="ReplicaCore.Fences"/>).</summary>
    public long Fences => _core.Fences;
    public string LastFenceReason => _core.LastFenceReason;
    /// <summary>MAIN thread, after every batch of events was stepped (at least every 20 ms: the watchdog's tick):
    /// what the operator-facing state is read on (<see cref="OperatorEventWatcher"/>).</summary>
    public Action? Drained { get; set; }
    /// <summary>Role changes and their causes with Unix-microsecond times, oldest first (the last 64).</summary>
    public (long UnixUs, string What)[] Events => _events.ToArray();

    /// <summary>Every sync's outcome (on the engine's continuation thread, before the VM's next entries are applied).</summary>
    public event Action<SyncStats>? SyncFinished;

    /// <summary>MAIN thread, once, before the guest runs: hold output, start the idle monitor (primary) or the join
    /// (a joining backup), apply the log.</summary>
    public void Start()
    {
        if (_core.IsStarted || _disposed) return;
        Step(ReplicaEvent.Start());
        _watchdog.Start();
        _log($"replica {_driver.SelfId}: started as {_core.Describe()}, {_host.OutputPorts.Count} NIC(s), " +
             $"syncs {(_core.IdleMonitorRunning ? "at idle or max epoch" : "on request")}");
        PostDrain();   // entries committed before the start
    }

    /// <summary>
    /// MAIN thread: starts the guest of a fresh cluster once the cluster is ready (the start-up gate). Not while
    /// a sync runs (its resume starts the VM: starting it in the middle would break the sync) or while joining
    /// (the join sync starts it with the primary's state). False if it did not start it.
    /// </summary>
    public bool StartGuest()
    {
        if (!_core.GuestMayStart || _disposed) return false;
        _vm.Start();   // a checkpoint backup's stays stopped: its first state is the primary's first checkpoint
        return true;
    }

    // ------------------------------------------------------------------ inputs and outputs

    /// <summary>
    /// MAIN thread (net_to_guest): a frame on its way into this guest. True if consumed: the primary proposes it (it
    /// reaches the guest when committed), a backup drops it (its guest gets the primary's inputs from the log). In
    /// checkpoint mode the serving primary lets it through (false); everyone else still drops it.
    /// The hot path: it stays out of the core (no event per frame, no wait for the main loop) and reads only the
    /// core's volatile role flags; the batcher proposes on its own, and a proposal by a non-leader is refused.
    /// </summary>
    public bool OnFrameToGuest(int nic, ReadOnlySpan<byte> frame)
    {
        if (_core.Role == ReplicaRole.Primary && _core.IsStarted && !_core.IsFenced && !_disposed)
        {
            if (!_core.CheckpointMode) { _lead.InputArrived(); _batcher.Add(nic, frame); return true; }
            Post(ReplicaEvent.FramePassed());
            return false;
        }
        Interlocked.Increment(ref _framesDroppedBackup);
        return true;
    }

    /// <summary>MAIN thread (net_from_guest): the guest sent frames that are now held. An unprotected primary lets
    /// them out at once; otherwise output waiting in the open epoch needs a sync, even when no input came in.</summary>
    public void OnOutputHeld(int nic, ulong openEpoch, ulong heldFrames)
    {
        if (heldFrames == 0) return;
        _lead.OutputHeld();
        _idle?.OutputHeld();
        long released = Guard.ReleaseUnprotected();
        if (released > 0)
        {
            Interlocked.Add(ref _framesReleasedUnprotected, released);
            CountRelease(released);
            return;
        }
        Post(ReplicaEvent.OutputHeld());
    }

    private void CountRelease(long frames, long? atUnixUs = null)
    {
        _released.Record(_driver.Term, frames, atUnixUs ?? ReleaseLog.NowUnixUs());
    }

    /// <summary>
    /// Asks for a SYNC entry with the next epoch (any thread). False if this replica cannot: not the primary, not
    /// the consensus leader, fenced, or without a sync connection to a backup (the sync would abort). The core
    /// proposes it on the main thread.
    /// </summary>
    public bool ProposeSync()
    {
        if (_core.Role != ReplicaRole.Primary || _core.IsFenced || _disposed || !_driver.IsLeader) return false;
        if (Engine.Connection is not { IsClosed: false }) return false;
        Post(ReplicaEvent.SyncRequested());
        return true;
    }

    // Under the consensus core lock: only queue and wake the main thread.
    private void OnCommitted(LogEntry entry)
    {
        if (entry.Type == EntryType.Input)
        {
            _lead.InputCommitted();
            if (_core.Role == ReplicaRole.Primary) _proposalClock.Committed();
        }
        Post(ReplicaEvent.Committed(entry));
    }

    // Any thread: nothing is released from here on. The guard is fenced at once, not when the main thread gets to
    // the event: consensus already knows this node may be replaced. (The guard's fence is thread-safe and one-way.)
    private void OnFenced(Fence fence)
    {
        if (_core.Role != ReplicaRole.Primary) return;
        Guard.Fence($"deposed: no longer leader of ballot {fence.Ballot} ({fence.Reason})");
        Post(ReplicaEvent.Fenced(fence));
    }

    /// <summary>Every 20 ms: time passes, with what the core cannot see from the main thread (is the backup silent
    /// to consensus, does the guard hold output).</summary>
    private void Watchdog()
    {
        while (!_stop.Wait(WatchdogMs))
        {
            bool answering = _driver.SilenceMs(_options.PeerId) < _options.BackupLoss.TotalMilliseconds / 2;
            Post(ReplicaEvent.Tick(Environment.TickCount64, answering, Guard.State == GuardState.Holding));
        }
    }

    // ------------------------------------------------------------------ the main thread: step the core, execute its actions

    private void Post(in ReplicaEvent e)
    {
        if (_disposed) return;
        _inbox.Enqueue(e);
        PostDrain();
    }

    private void PostDrain()
    {
        if (_disposed) return;
        if (Interlocked.Exchange(ref _drainPosted, 1) == 0) _host.Main.PostRecurring(_drain);
    }

    /// <summary>MAIN thread: steps queued events in order (a bounded number per callback).</summary>
    private void Drain()
    {
        Volatile.Write(ref _drainPosted, 0);
        if (_disposed) return;
        // The sync link as it is now (the sync link's thread sets and the engine clears the connection).
        bool up = Engine.Connection is { IsClosed: false };
        long connections = Engine.ConnectionsSet;
        if (up != _linkUp || connections != _linkConnections)
        {
            (_linkUp, _linkConnections) = (up, connections);
            Step(ReplicaEvent.Link(up, connections));
        }
        for (int budget = MaxEventsPerDrain; budget > 0 && _inbox.TryDequeue(out var e); budget--)
        {
            Step(e);
            if (_disposed) return;
        }
        if (!_inbox.IsEmpty) PostDrain();
        Drained?.Invoke();
    }

    /// <summary>MAIN thread.</summary>
    private void Step(in ReplicaEvent e)
    {
        _core.Step(e);
        var actions = _core.Actions;
        for (int i = 0; i < actions.Count; i++) Execute(actions[i]);
        actions.Clear();
    }

    private void Execute(in ReplicaAction a)
    {
        switch (a.Kind)
        {
            case ReplicaActionKind.StartGuard: Guard.Start(); break;
            case ReplicaActionKind.StopVm:
                _stoppedAt = Stopwatch.GetTimestamp();
                try { _vm.Stop(); }
                catch (Exception e) { _log($"replica {_driver.SelfId}: vm_stop failed: {e.Message}"); }
                break;
            case ReplicaActionKind.StartVm:
                try { _vm.Start(); }
                catch (Exception e) { _log($"replica {_driver.SelfId}: vm_start failed: {e.Message}"); }
                break;
            case ReplicaActionKind.Inject:
                _lead.InputInjected();
                if (_host.Inject(a.Nic, a.Frame.Span) < 0) _injectFailures++;
                Volatile.Write(ref _framesInjected, _framesInjected + 1);
                break;
            case ReplicaActionKind.RunSync: RunSync(a.Request!); break;
            case ReplicaActionKind.CloseSyncConnection: Engine.Connection?.Dispose(); break;
            case ReplicaActionKind.ProposeSync:
                _lead.SyncProposed();
                if (!_driver.Propose(EntryType.Sync, EntryPayloads.EncodeSync(a.Epoch, a.NextMode)))
                    _inbox.Enqueue(ReplicaEvent.ProposalRefused(a.Purpose));
                break;
            case ReplicaActionKind.ProposeRole:
                if (!_driver.Propose(EntryType.Role, EntryPayloads.EncodeRole(_driver.Ballot, _driver.SelfId, a.Node)))
                    _inbox.Enqueue(ReplicaEvent.ProposalRefused(a.Purpose));
                break;
            case ReplicaActionKind.GuardProtect: Guard.Protect(); break;
            case ReplicaActionKind.GuardRunUnprotected: CountRelease(Guard.RunUnprotected(a.Text!)); break;
            case ReplicaActionKind.GuardFence: Guard.Fence(a.Text!); break;
            case ReplicaActionKind.GuardPromote: CountRelease(Guard.Promote()); break;
            case ReplicaActionKind.GuardDemote: Guard.Demote(); break;
            case ReplicaActionKind.SetSyncRole:
                // promoted: its images serve from here, newer than any copy synced before (written before output leaves)
                if (a.Role == SyncRole.Primary && _host.Disks is { } disks)
                    disks.RecordGeneration(new DiskGeneration(disks.Generation.Number + 1, Primary: true));
                Engine.SetRole(a.Role);
                break;
            case ReplicaActionKind.Announce: _host.Announce(); break;
            case ReplicaActionKind.StartIdleMonitor:
                if (_idle is null && _options.VcpuThreadIds is { } tids && _options.Idle is { } idle)
                    _idle = new IdleMonitor(idle, tids, trigger =>
                    {
                        _lead.IdleTriggered();
                        Post(ReplicaEvent.Idle(trigger));
                    }, _options.CpuTime);
                break;
            case ReplicaActionKind.StopIdleMonitor:
                _idle?.Dispose();
                _idle = null;
                break;
            case ReplicaActionKind.RearmIdleMonitor: _idle?.EpochStarted(); break;
            case ReplicaActionKind.SetCanCampaign: _driver.SetCanCampaign(a.Flag); break;
            case ReplicaActionKind.InstallSnapshot: _driver.InstallSnapshot(a.Index); break;
            case ReplicaActionKind.Compact: _driver.Compact(a.Index); break;
            case ReplicaActionKind.Yield: Post(ReplicaEvent.Continue()); break;
            case ReplicaActionKind.Event:
                _events.Enqueue((ReleaseLog.NowUnixUs(), a.Text!));
                while (_events.Count > 64) _events.TryDequeue(out _);
                break;
        }
        // (a refused proposal's event is queued, not stepped here: the core is in the middle of its action list)
        if (a.Kind is ReplicaActionKind.ProposeSync or ReplicaActionKind.ProposeRole && !_inbox.IsEmpty) PostDrain();
    }

    /// <summary>MAIN thread: queue the sync on the engine's thread; its end comes back as an event.</summary>
    private void RunSync(SyncRequest request)
    {
        // The guest's pause counts from the replica's vm_stop at the SYNC entry, not from when the engine takes it up.
        var run = request.IsJoin ? request : request with { StoppedAt = _stoppedAt, Lead = _lead.Take(_stoppedAt) };
        var done = Engine.RunAsync(run);
        // In the order the syncs were queued: two in flight finish back to back, and their continuations on the
        // thread pool could otherwise report (SyncFinished) and post their ends out of order.
        _syncsReported = Task.WhenAll(_syncsReported, done).ContinueWith(_ => SyncDone(request, done), TaskScheduler.Default);
    }

    // The engine's thread pool continuation: the VM runs again (the engine restarted it, completed or not).
    private void SyncDone(SyncRequest request, Task<SyncStats> task)
    {
        SyncStats? stats = task.IsCompletedSuccessfully ? task.Result : null;
        bool completed = stats is { Outcome: SyncOutcome.Completed };
        if (completed)
        {
            Interlocked.Increment(ref _syncsCompleted);
            if (_core.Role == ReplicaRole.Primary && stats!.OutputFrames > 0)
                CountRelease(stats.OutputFrames, stats.OutputUtc is { } at ? (at - DateTime.UnixEpoch).Ticks / 10 : null);
        }
        else if (!request.IsJoin || stats?.Error is not null)
            Interlocked.Increment(ref _syncsAborted);
        if (stats is not null)
        {
            try { SyncFinished?.Invoke(stats); }
            catch (Exception e) { _log($"replica {_driver.SelfId}: SyncFinished handler failed: {e.Message}"); }
        }
        Post(ReplicaEvent.SyncFinished(request, SyncResult.From(stats, task.Exception?.GetBaseException().Message, Engine.StateInvalid)));
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _stop.Set();
        if (_watchdog.IsAlive) _watchdog.Join(TimeSpan.FromSeconds(2));
        _driver.Committed = null;
        _driver.StateChanged = null;
        _driver.Fenced = null;
        _driver.SnapshotNeeded = null;
        _idle?.Dispose();
        _batcher.Dispose();
        Engine.Dispose();
    }
}
