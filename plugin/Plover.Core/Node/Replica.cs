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
/// The consensus driver belongs to the caller, who starts it after constructing the replica (its callbacks are
/// taken here) and disposes it after the replica.
/// </summary>
public sealed class Replica : IDisposable
{
    /// <summary>Committed entries applied per main-thread callback (a backlog must not hold QEMU's main loop).</summary>
    private const int MaxEntriesPerDrain = 256;

    private readonly ReplicaOptions _options;
    private readonly IReplicaHost _host;
    private readonly IVmHost _vm;           // the host's VM behind the checkpoint gate
    private readonly bool _checkpoint;
    private readonly ConsensusDriver _driver;
    private readonly Action<string> _log;
    private readonly ReplicaInputBatcher _batcher;
    private readonly ConcurrentQueue<LogEntry> _committed = new();
    private readonly List<ReadOnlyMemory<byte>> _frames = new();   // main thread: decoded INPUT batch
    private readonly Action _drain;   // cached: posted once per batch of commits
    private readonly ProposalClock _proposalClock = new();
    private readonly Thread _watchdog;
    private readonly ManualResetEventSlim _stop = new();
    private IdleMonitor? _idle;
    private int _drainPosted;

    // Main-thread state.
    private bool _syncing;            // a sync or a join runs
    private bool _heldAtCut;          // the VM stopped at a SYNC entry (or joins): later entries wait
    private int _syncsInFlight;       // queued on the engine (two when a SYNC commits while an early-resumed sync runs)
    private long _cutIndex;           // log index of the latest SYNC entry this replica stopped at
    private long _skipThrough;        // entries up to here are covered by a joined state: not applied
    private ulong _inputDigest;       // chain over (index, payload) of every INPUT injected
    private long _outputReports, _outputReportsAtCut;
    private Action? _demoteWhenIdle;   // a demotion that waits for the sync in flight to end

    // Shared state (volatile or interlocked).
    private ulong _lastSyncEpoch;
    private ulong _proposedEpoch;     // under _epochLock
    private readonly Lock _epochLock = new();
    private volatile bool _firstSyncDone;
    private volatile bool _nextSyncFull;
    private volatile ReplicaRole _role;
    private volatile bool _joining;
    private volatile bool _runsAlone; // a primary without a backup: output unprotected (or about to be)
    private volatile bool _fenced;    // deposed as primary, not yet a backup again
    private volatile int _backupId;   // the primary's backup per the last ROLE entry (0: none)
    private volatile bool _started;
    private volatile bool _disposed;
    private SyncConnection? _lastConnection;   // watchdog: a new connection means a (re)joined backup
    private long _linkDownSince;               // watchdog: Environment.TickCount64, 0 while up
    private bool _aloneProposed;               // watchdog: ROLE(self, 0) proposed for this loss
    private long _framesPassed;       // checkpoint mode: frames the primary let into its guest directly
    private long _inputsInjected, _framesInjected, _injectFailures, _framesDroppedBackup, _syncsCompleted, _syncsAborted;
    private long _lastAppliedIndex, _inputsAtLastSync;
    private long _triggersIdle, _triggersMaxEpoch, _triggersNothingNew, _triggersRefused;
    private long _promotions, _demotions, _joins, _framesReleasedUnprotected, _inputDivergences;
    private readonly ReleaseLog _released = new();
    private readonly ConcurrentQueue<(long UnixUs, string What)> _events = new();

    public Replica(ReplicaOptions options, IReplicaHost host, ConsensusDriver driver)
    {
        _options = options;
        _host = host;
        _driver = driver;
        _log = options.Log;
        _role = options.Role;
        _joining = options.Joining;
        _drain = Drain;
        _checkpoint = options.Sync.Checkpoint;
        _vm = new PassiveVmGate(host.Vm, () => _checkpoint && _role == ReplicaRole.Backup);
        bool primary = options.Role == ReplicaRole.Primary;
        if (primary && options.Joining) throw new ArgumentException("a joining replica is a backup");
        Guard = new OutputGuard(primary ? GuardRole.Primary : GuardRole.Backup, host.OutputPorts, _log);
        var syncOptions = options.Sync.Log is null ? options.Sync with { Log = _log } : options.Sync;
        Engine = new SyncEngine(primary ? SyncRole.Primary : SyncRole.Backup, host.Memory, _vm, host.Main, Guard, syncOptions);
        Engine.ResumedEarly += OnResumedEarly;
        _batcher = new ReplicaInputBatcher(options.MaxInputEntryBytes, options.MaxPendingInputBytes,
            payload => _proposalClock.ProposeInput(_driver, payload.Span));   // one delegate, made here: nothing per entry
        driver.Committed = OnCommitted;
        driver.StateChanged = OnStateChanged;
        driver.Fenced = OnFenced;
        driver.SnapshotNeeded = s =>
        {
            if (!_joining)
                _log($"replica {driver.SelfId}: the log before index {s.Index} is gone at leader {s.LeaderId}: this replica rejoins with a full sync");
        };
        if (_joining) driver.SetCanCampaign(false);
        _backupId = primary ? options.PeerId : 0;
        _watchdog = new Thread(Watchdog) { IsBackground = true, Name = "plover-replica-watchdog" };
    }

    public OutputGuard Guard { get; }
    public SyncEngine Engine { get; }
    public ReplicaRole Role => _role;
    /// <summary>A backup without a valid state, waiting for the primary's full sync (it cannot take over).</summary>
    public bool IsJoining => _joining;
    /// <summary><see cref="Start"/> ran: output is held and inputs are taken.</summary>
    public bool IsStarted => _started;
    /// <summary>Deposed as primary and not (yet) a backup again.</summary>
    public bool IsFenced => _fenced;
    /// <summary>A primary running without a backup (output unprotected).</summary>
    public bool RunsAlone => _role == ReplicaRole.Primary && _runsAlone;
    /// <summary>A primary's backup per the last ROLE entry applied (0: none).</summary>
    public int BackupId => _backupId;
    public ulong LastSyncEpoch => Volatile.Read(ref _lastSyncEpoch);
    /// <summary>Index of the last committed entry applied to the guest (injected, or the SYNC the VM stopped at).</summary>
    public long LastAppliedIndex => Volatile.Read(ref _lastAppliedIndex);
    public long InputsInjected => Volatile.Read(ref _inputsInjected);
    public long FramesInjected => Volatile.Read(ref _framesInjected);
    /// <summary>Checkpoint mode: frames the primary let straight into its guest.</summary>
    public long FramesPassed => Volatile.Read(ref _framesPassed);
    /// <summary>Checkpoint mode (see the class summary).</summary>
    public bool Checkpoint => _checkpoint;
    public long InjectFailures => Volatile.Read(ref _injectFailures);
    /// <summary>Primary: frames queued for proposal; dropped ones (backlog full, not leader) in <see cref="FramesDropped"/>.</summary>
    public long FramesStolen => _batcher.FramesQueued;
    public long FramesDropped => _batcher.FramesDropped + Volatile.Read(ref _framesDroppedBackup);
    public long SyncsCompleted => Volatile.Read(ref _syncsCompleted);
    public long SyncsAborted => Volatile.Read(ref _syncsAborted);
    /// <summary>Running digest of every INPUT entry injected so far, in log order (equal on both replicas at equal
    /// log positions); recorded per sync in <see cref="SyncStats.InputDigest"/>.</summary>
    public ulong InputDigest => Volatile.Read(ref _inputDigest);
    /// <summary>Backup: syncs whose cut found the primary's input digest different from this replica's (each resynchronised every page).</summary>
    public long InputDivergences => Interlocked.Read(ref _inputDivergences);
    /// <summary>Primary: proposal-to-commit latency of INPUT entries.</summary>
    public LatencyHistogram CommitLatency => _proposalClock.Latency;
    public long EntriesProposed => _batcher.EntriesProposed;
    /// <summary>What the idle monitor asked for: syncs proposed because the guest idled or the epoch reached its
    /// maximum, idle moments skipped because nothing came in since the last sync, proposals refused.</summary>
    public (long Idle, long MaxEpoch, long NothingNew, long Refused) SyncTriggers =>
        (Interlocked.Read(ref _triggersIdle), Interlocked.Read(ref _triggersMaxEpoch),
         Interlocked.Read(ref _triggersNothingNew), Interlocked.Read(ref _triggersRefused));
    /// <summary>Promotions to primary, demotions of a deposed primary, completed joins.</summary>
    public (long Promotions, long Demotions, long Joins) RoleChanges =>
        (Interlocked.Read(ref _promotions), Interlocked.Read(ref _demotions), Interlocked.Read(ref _joins));
    /// <summary>Frames this node let out, by consensus term (the split-brain check: one node per term).</summary>
    public IReadOnlyDictionary<long, long> ReleasedByTerm => _released.Windows().ToDictionary(w => w.Term, w => w.Frames);
    /// <summary>When this node let frames out, per term (the split-brain check across terms).</summary>
    public ReleaseLog.Window[] ReleaseWindows => _released.Windows();
    /// <summary>Role changes and their causes with Unix-microsecond times, oldest first (the last 64).</summary>
    public (long UnixUs, string What)[] Events => _events.ToArray();

    /// <summary>Every sync's outcome (on the engine's continuation thread, before the VM's next entries are applied).</summary>
    public event Action<SyncStats>? SyncFinished;

    /// <summary>MAIN thread, once, before the guest runs: hold output, start the idle monitor (primary) or the join
    /// (a joining backup), apply the log.</summary>
    public void Start()
    {
        if (_started) return;
        Guard.Start();
        if (_role == ReplicaRole.Primary) StartIdleMonitor();
        _started = true;
        _watchdog.Start();
        if (_joining) StartJoin();
        else PostDrain();
        Event($"started as {Describe()}");
        _log($"replica {_driver.SelfId}: started as {Describe()}, {_host.OutputPorts.Count} NIC(s), " +
             $"syncs {(_idle is null ? "on request" : "at idle or max epoch")}");
    }

    /// <summary>
    /// MAIN thread: starts the guest of a fresh cluster once the cluster is ready (the start-up gate). Not while
    /// a sync runs (its resume starts the VM: starting it in the middle would break the sync) or while joining
    /// (the join sync starts it with the primary's state). False if it did not start it.
    /// </summary>
    public bool StartGuest()
    {
        if (_syncing || _joining || _disposed) return false;
        _vm.Start();   // a checkpoint backup's stays stopped: its first state is the primary's first checkpoint
        return true;
    }

    private string Describe() => _joining ? "joining backup (waits for the primary's full sync)" : _role.ToString().ToLowerInvariant();

    private void StartIdleMonitor()
    {
        if (_idle is null && _options.VcpuThreadIds is { } tids && _options.Idle is { } idle)
            _idle = new IdleMonitor(idle, tids, OnIdleTrigger, _options.CpuTime);
    }

    // ------------------------------------------------------------------ inputs and outputs

    /// <summary>
    /// MAIN thread (net_to_guest): a frame on its way into this guest. True if consumed: the primary proposes it (it
    /// reaches the guest when committed), a backup drops it (its guest gets the primary's inputs from the log). In
    /// checkpoint mode the serving primary lets it through (false); everyone else still drops it.
    /// </summary>
    public bool OnFrameToGuest(int nic, ReadOnlySpan<byte> frame)
    {
        if (_role == ReplicaRole.Primary && _started && !_fenced && !_disposed)
        {
            if (!_checkpoint) { _batcher.Add(nic, frame); return true; }
            Volatile.Write(ref _framesPassed, _framesPassed + 1);
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
        long released = Guard.ReleaseUnprotected();
        if (released > 0)
        {
            Interlocked.Add(ref _framesReleasedUnprotected, released);
            CountRelease(released);
            return;
        }
        Volatile.Write(ref _outputReports, _outputReports + 1);
    }

    private void CountRelease(long frames, long? atUnixUs = null)
    {
        _released.Record(_driver.Term, frames, atUnixUs ?? ReleaseLog.NowUnixUs());
    }

    /// <summary>
    /// Proposes a SYNC entry with the next epoch (any thread). False if this replica cannot: not the primary, not
    /// the consensus leader, fenced, or without a sync connection to a backup (the sync would abort).
    /// </summary>
    public bool ProposeSync()
    {
        if (_role != ReplicaRole.Primary || _fenced || _disposed || !_driver.IsLeader) return false;
        if (Engine.Connection is not { IsClosed: false }) return false;
        ulong epoch;
        lock (_epochLock)
        {
            epoch = Math.Max(Volatile.Read(ref _lastSyncEpoch), _proposedEpoch) + 1;
            _proposedEpoch = epoch;
        }
        return _driver.Propose(EntryType.Sync, EntryPayloads.EncodeSync(epoch));
    }

    /// <summary>
    /// The idle monitor's thread. An idle guest that received no input and sent no output since the last sync has
    /// nothing new to make safe, so it is not stopped again (a guest idle for minutes would otherwise be stopped
    /// every few hundred microseconds); the maximum epoch always syncs. Re-arms itself when no sync will follow.
    /// </summary>
    private void OnIdleTrigger(SyncTrigger trigger)
    {
        // The monitor's thread can fire before its constructor returned and _idle was set: wait for it (a trigger
        // that returned without re-arming would pause the monitor for good).
        IdleMonitor? idle = null;
        SpinWait.SpinUntil(() => (idle = Volatile.Read(ref _idle)) is not null || _disposed, 1000);
        if (idle is null) return;
        bool nothingNew = trigger == SyncTrigger.Idle && _firstSyncDone &&
                          InputsTaken == Volatile.Read(ref _inputsAtLastSync) &&
                          Volatile.Read(ref _outputReports) == Volatile.Read(ref _outputReportsAtCut);
        if (nothingNew || _runsAlone || !ProposeSync())
        {
            Interlocked.Increment(ref nothingNew ? ref _triggersNothingNew : ref _triggersRefused);
            idle.EpochStarted();
            return;
        }
        Interlocked.Increment(ref trigger == SyncTrigger.Idle ? ref _triggersIdle : ref _triggersMaxEpoch);
        // A proposal can still be lost (leadership lost before it committed): then no sync would ever re-arm the monitor.
        ulong proposed = Volatile.Read(ref _proposedEpoch);
        Task.Delay(_options.RetryAfterAbort * 4).ContinueWith(_ =>
        {
            if (!_disposed && Volatile.Read(ref _lastSyncEpoch) < proposed) idle.EpochStarted();
        }, TaskScheduler.Default);
    }

    /// <summary>Inputs this guest took so far (INPUT entries, or frames let through in checkpoint mode).</summary>
    private long InputsTaken => Volatile.Read(ref _inputsInjected) + Volatile.Read(ref _framesPassed);

    // ------------------------------------------------------------------ committed entries, in log order

    // Under the consensus core lock: only queue and wake the main thread.
    private void OnCommitted(LogEntry entry)
    {
        if (entry.Type == EntryType.Input && _role == ReplicaRole.Primary) _proposalClock.Committed();
        _committed.Enqueue(entry);
        PostDrain();
    }

    private void PostDrain()
    {
        if (_disposed) return;
        if (Interlocked.Exchange(ref _drainPosted, 1) == 0) _host.Main.PostRecurring(_drain);
    }

    /// <summary>MAIN thread: applies committed entries in order until the queue is empty or a SYNC stops the VM.</summary>
    private void Drain()
    {
        Volatile.Write(ref _drainPosted, 0);
        // A joining backup applies nothing until its join sync: that state covers every entry up to its cut, and
        // a SYNC entry run as an ordinary sync in between (the join retries after an abort) would take the
        // primary's full sync without ending the join.
        if (!_started || _heldAtCut || _joining || _disposed) return;
        int budget = MaxEntriesPerDrain;
        while (_committed.TryDequeue(out var entry))
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
                PostDrain();   // give the main loop back; the rest follows in the next callback, in order
                return;
            }
        }
    }

    private void Inject(in LogEntry entry)
    {
        _frames.Clear();
        int nic;
        try { nic = EntryPayloads.DecodeInput(entry.Payload, _frames); }
        catch (FormatException e)
        {
            _log($"replica {_driver.SelfId}: INPUT entry {entry.Index} is malformed ({e.Message}); skipped on every replica alike");
            return;
        }
        if (nic >= _host.OutputPorts.Count)
        {
            _log($"replica {_driver.SelfId}: INPUT entry {entry.Index} names NIC {nic}, this VM has {_host.OutputPorts.Count}; skipped");
            return;
        }
        foreach (var frame in _frames)
        {
            if (_host.Inject(nic, frame.Span) < 0) _injectFailures++;
            _framesInjected++;
        }
        _inputsInjected++;
        Volatile.Write(ref _inputDigest, ChainDigest(_inputDigest, entry.Index, entry.Payload.Span));
    }

    /// <summary>MAIN thread: a committed SYNC. True if the VM was stopped and a sync started (the drain pauses).</summary>
    private bool BeginSync(in LogEntry entry)
    {
        ulong epoch;
        try { epoch = EntryPayloads.DecodeSync(entry.Payload.Span); }
        catch (FormatException e)
        {
            _log($"replica {_driver.SelfId}: SYNC entry {entry.Index} is malformed ({e.Message}); skipped");
            return false;
        }
        if (epoch <= Volatile.Read(ref _lastSyncEpoch)) return false;   // a duplicate proposal: the first one with this epoch counted
        Volatile.Write(ref _lastSyncEpoch, epoch);
        if (_role == ReplicaRole.Primary && Engine.Connection is not { IsClosed: false })
        {
            _log($"replica {_driver.SelfId}: SYNC e{epoch} at {entry.Index} skipped: no sync connection to the backup");
            return false;
        }
        // A backup always runs it: the primary proposed it with the link up, and this side's end of a link that
        // has just been established may register a moment later (the engine waits for it).
        // Every entry before this one was injected in this same callback (or an earlier one) and none after it
        // will be until the sync is over: both VMs stop at the same log position.
        _syncing = _heldAtCut = true;
        _syncsInFlight++;
        _cutIndex = entry.Index;
        Volatile.Write(ref _inputsAtLastSync, InputsTaken);
        Volatile.Write(ref _outputReportsAtCut, _outputReports);
        Volatile.Write(ref _lastAppliedIndex, entry.Index);
        bool full = (!_firstSyncDone && _options.FirstSyncFull) || _nextSyncFull;
        var request = new SyncRequest(epoch, entry.Index, FullSync: full, InputDigest: _inputDigest) { StoppedAt = Stopwatch.GetTimestamp() };
        try { _vm.Stop(); }
        catch (Exception e) { _log($"replica {_driver.SelfId}: vm_stop at SYNC e{epoch} failed: {e.Message}"); }
        Engine.RunAsync(request).ContinueWith(t => SyncDone(request, t), TaskScheduler.Default);
        return true;
    }

    // The engine's thread pool continuation: the VM runs again (the engine restarted it, completed or not).
    private void SyncDone(SyncRequest request, Task<SyncStats> task)
    {
        SyncStats? stats = task.IsCompletedSuccessfully ? task.Result : null;
        bool completed = stats is { Outcome: SyncOutcome.Completed };
        if (completed)
        {
            Interlocked.Increment(ref _syncsCompleted);
            if (stats!.FullSync) _nextSyncFull = false;
            _firstSyncDone = true;
            if (!stats.Joined) _driver.Compact(request.LogIndex);   // the VM state now covers everything up to the SYNC entry
            if (_role == ReplicaRole.Primary && stats.OutputFrames > 0)
                CountRelease(stats.OutputFrames, stats.OutputUtc is { } at ? (at - DateTime.UnixEpoch).Ticks / 10 : null);
        }
        else if (!request.IsJoin || stats?.Error is not null)
        {
            Interlocked.Increment(ref _syncsAborted);
            if (!request.IsJoin)
                _log($"replica {_driver.SelfId}: sync e{request.Epoch} at {request.LogIndex} aborted: {stats?.Error ?? task.Exception?.GetBaseException().Message}");
        }
        if (_idle is { } idleMonitor && !request.IsJoin)
        {
            if (completed) idleMonitor.EpochStarted();
            else Task.Delay(_options.RetryAfterAbort).ContinueWith(_ => { if (!_disposed) idleMonitor.EpochStarted(); }, TaskScheduler.Default);
        }
        if (stats is not null)
        {
            try { SyncFinished?.Invoke(stats); }
            catch (Exception e) { _log($"replica {_driver.SelfId}: SyncFinished handler failed: {e.Message}"); }
        }
        if (_disposed) return;
        _host.Main.Post(() =>
        {
            bool last = --_syncsInFlight == 0;   // else a later SYNC entry holds the VM at its cut already
            if (last) _syncing = _heldAtCut = false;
            if (completed && stats!.InputsDiverged)
            {
                Interlocked.Increment(ref _inputDivergences);
                Volatile.Write(ref _inputDigest, stats.InputDigest);   // the primary's: the next cut compares equal again
                Event($"inputs diverged before sync e{stats.Epoch}: resynchronised every page");
            }
            if (request.IsJoin)
            {
                if (completed) FinishJoin(stats!);
                else if (_joining)
                {
                    // No primary sync yet (or it failed): keep waiting, the VM stays stopped.
                    Task.Delay(_options.RetryAfterAbort).ContinueWith(_ => _host.Main.Post(() => { if (_joining && !_syncing && !_disposed) StartJoin(); }),
                        TaskScheduler.Default);
                    return;
                }
            }
            else if (completed && _role == ReplicaRole.Primary && stats!.FullSync && _runsAlone)
                FinishReprotection();
            else if (!completed && !_joining && !_fenced && last)
                ResumeAfterAbort();
            if (_demoteWhenIdle is { } demote) { _demoteWhenIdle = null; demote(); return; }
            Drain();
        });
    }

    /// <summary>MAIN thread (from the engine): the primary's guest resumed while the sync of the latest cut goes on
    /// from its snapshot; entries after the cut may enter the guest (their output is held for the next sync).</summary>
    private void OnResumedEarly(SyncRequest request)
    {
        if (request.LogIndex != _cutIndex || !_heldAtCut || _joining || _disposed) return;
        _heldAtCut = false;
        PostDrain();
    }

    /// <summary>
    /// MAIN thread: this replica stopped the VM at the SYNC entry (BeginSync); the engine restarts it only once its
    /// own stop step ran, so a sync that failed before (no connection within the timeout) would leave it stopped.
    /// vm_start is a no-op on a running VM.
    /// </summary>
    private void ResumeAfterAbort()
    {
        try { _vm.Start(); }
        catch (Exception e) { _log($"replica {_driver.SelfId}: vm_start after an aborted sync failed: {e.Message}"); }
    }

    // ------------------------------------------------------------------ roles

    /// <summary>MAIN thread: a committed ROLE entry (ballot, primary, backup), in log order on every replica.</summary>
    private void ApplyRole(in LogEntry entry)
    {
        (Ballot ballot, int primary, int backup) role;
        try { role = EntryPayloads.DecodeRole(entry.Payload.Span); }
        catch (FormatException e)
        {
            _log($"replica {_driver.SelfId}: ROLE entry {entry.Index} is malformed ({e.Message}); skipped");
            return;
        }
        int self = _driver.SelfId;
        if (role.primary == self)
        {
            _backupId = role.backup;
            if (_role == ReplicaRole.Backup)
            {
                // Our own election's entry: everything committed before it has been applied. Promote, unless this
                // replica cannot serve (joining: its state is not the primary's).
                if (role.ballot == _driver.Ballot && _driver.IsLeader) Promote(role.ballot);
                return;
            }
            if (role.backup == 0 && !_runsAlone)
            {
                _runsAlone = true;
                long n = Guard.RunUnprotected($"ROLE at index {entry.Index}: node {self} runs without a backup in term {role.ballot.Round}");
                CountRelease(n);
                Event($"running unprotected (ROLE at {entry.Index})");
            }
            else if (role.backup != 0)
                Event($"protected by node {role.backup} (ROLE at {entry.Index})");
            return;
        }
        // Another node is the primary.
        if (_role == ReplicaRole.Primary)
        {
            Guard.Fence($"ROLE at index {entry.Index} names node {role.primary} primary in term {role.ballot.Round}");
            _fenced = true;
            BecomeJoining($"node {role.primary} is primary in term {role.ballot.Round}");
        }
        else if (role.backup != self && !_joining)
            BecomeJoining($"node {role.primary} is primary in term {role.ballot.Round} without this node as its backup");
    }

    // Under the consensus core lock.
    private void OnStateChanged(ConsensusStatus status)
    {
        Event($"consensus: {status.Role.ToString().ToLowerInvariant()} in ballot {status.Ballot}, leader {status.LeaderId}");
        // A backup elected leader: the primary is gone. A sync still waiting for it would only time out.
        if (status.Role == ConsensusRole.Leader && _role == ReplicaRole.Backup && !_disposed)
            _host.Main.Post(() => { if (_syncing && !_joining) Engine.Connection?.Dispose(); });
    }

    /// <summary>MAIN thread: this backup won an election and applied its own ROLE entry: release what it holds and serve.</summary>
    private void Promote(Ballot ballot)
    {
        if (_role == ReplicaRole.Primary || _disposed) return;
        if (_joining || Engine.StateInvalid)
        {
            _log($"replica {_driver.SelfId}: LEADER in ballot {ballot} but this replica has no valid VM state " +
                 $"({(_joining ? "it was waiting for a full sync" : "its last apply failed")}): it does not serve and output stays held");
            return;
        }
        _role = ReplicaRole.Primary;
        Engine.SetRole(SyncRole.Primary);
        Engine.Connection?.Dispose();   // it led to the deposed primary; the sync link accepts the next one
        _runsAlone = true;
        _backupId = 0;
        _nextSyncFull = true;
        long released = Guard.Promote();
        CountRelease(released);
        if (_checkpoint) ResumeAfterAbort();   // the gate is open now: the guest runs on from the last checkpoint
        _host.Announce();
        StartIdleMonitor();
        Interlocked.Increment(ref _promotions);
        Event($"promoted to primary in ballot {ballot}");
        _log($"replica {_driver.SelfId}: PROMOTED to primary in ballot {ballot}: released {released} held frame(s), " +
             "announced the guest's MAC; running without a backup until one joins");
    }

    // Any thread (the guard's fence is thread-safe and one-way): nothing is released from here on.
    private void OnFenced(Fence fence)
    {
        if (_role != ReplicaRole.Primary) return;
        Guard.Fence($"deposed: no longer leader of ballot {fence.Ballot} ({fence.Reason})");
        _fenced = true;   // after the guard: IsFenced true means nothing can be released any more
        Event($"fenced in ballot {fence.Ballot}: {fence.Reason}");
        if (_disposed) return;
        if (fence.Reason == FenceReason.LostQuorum)
            _host.Main.Post(() => BecomeStandby($"lost its quorum as leader of ballot {fence.Ballot}"));
        else
            _host.Main.Post(() => BecomeJoining($"deposed as leader of ballot {fence.Ballot}"));
    }

    /// <summary>
    /// MAIN thread: a primary that lost its quorum. Nobody need have replaced it (if it ran alone, nobody could: the
    /// ROLE entry that dropped its backup bars that node from leading), and its VM has applied every entry it knows
    /// to be committed. So it stays a backup with its VM state and may campaign: elected again, it serves on at its own
    /// ROLE entry; a ROLE entry naming another primary makes it join as usual. Held output is discarded either way.
    /// </summary>
    private void BecomeStandby(string why)
    {
        if (_role != ReplicaRole.Primary || _joining || _disposed) return;
        if (_syncing)
        {
            _demoteWhenIdle = () => BecomeStandby(why);
            Engine.Connection?.Dispose();   // the sync in flight aborts; SyncDone comes back here
            return;
        }
        _idle?.Dispose();
        _idle = null;
        Guard.Demote();
        _role = ReplicaRole.Backup;
        Engine.SetRole(SyncRole.Backup);
        Engine.Connection?.Dispose();   // the link to its backup: whoever leads next syncs that node as a joining one
        _runsAlone = false;
        _backupId = 0;
        _fenced = false;
        if (_checkpoint)
        {
            try { _vm.Stop(); }   // a checkpoint backup's VM never runs; its RAM (ahead of any checkpoint) is kept
            catch (Exception e) { _log($"replica {_driver.SelfId}: vm_stop failed: {e.Message}"); }
        }
        ResumeAfterAbort();   // a sync this primary aborted may have left the VM stopped; its RAM is intact
        Interlocked.Increment(ref _demotions);
        Event($"standby: {why}");
        _log($"replica {_driver.SelfId}: {why}: its held output is discarded; it keeps its VM as a standby backup " +
             "and may be elected again (a new primary's ROLE entry makes it join instead)");
    }

    /// <summary>MAIN thread: this replica's VM state is no longer usable (deposed, or dropped as backup): stop the
    /// VM, discard held output, and wait as a backup for the primary's full sync.</summary>
    private void BecomeJoining(string why)
    {
        if (_joining || _disposed) return;
        if (_syncing)
        {
            _demoteWhenIdle = () => BecomeJoining(why);
            Engine.Connection?.Dispose();   // the sync in flight aborts; SyncDone comes back here
            return;
        }
        bool wasPrimary = _role == ReplicaRole.Primary;
        _idle?.Dispose();
        _idle = null;
        try { _vm.Stop(); }
        catch (Exception e) { _log($"replica {_driver.SelfId}: vm_stop failed: {e.Message}"); }
        Guard.Demote();
        _role = ReplicaRole.Backup;
        Engine.SetRole(SyncRole.Backup);
        _joining = true;
        _runsAlone = false;
        _backupId = 0;
        _driver.SetCanCampaign(false);
        if (wasPrimary) Interlocked.Increment(ref _demotions);
        Event($"joining: {why}");
        _log($"replica {_driver.SelfId}: {why}: the VM is stopped and its held output discarded; rejoining as backup " +
             "(waits for the primary's full sync)");
        StartJoin();
    }

    /// <summary>MAIN thread: wait (on the engine's thread) for the primary's next sync and take it.</summary>
    private void StartJoin()
    {
        _syncing = _heldAtCut = true;
        _syncsInFlight++;
        Engine.RunAsync(SyncRequest.Join).ContinueWith(t => SyncDone(SyncRequest.Join, t), TaskScheduler.Default);
    }

    /// <summary>MAIN thread: the join sync applied: this replica has the primary's state at the cut.</summary>
    private void FinishJoin(SyncStats stats)
    {
        _joining = false;
        _fenced = false;
        _skipThrough = stats.LogIndex;
        Volatile.Write(ref _lastAppliedIndex, Math.Max(_lastAppliedIndex, stats.LogIndex));
        Volatile.Write(ref _lastSyncEpoch, Math.Max(_lastSyncEpoch, stats.Epoch));
        Volatile.Write(ref _inputDigest, stats.InputDigest);
        Volatile.Write(ref _inputsAtLastSync, InputsTaken);
        _driver.InstallSnapshot(stats.LogIndex);   // a node with no log: entries before the cut are not needed
        _driver.SetCanCampaign(true);
        Interlocked.Increment(ref _joins);
        Event($"joined at sync e{stats.Epoch} (log index {stats.LogIndex})");
        _log($"replica {_driver.SelfId}: JOINED as backup at sync e{stats.Epoch} (log index {stats.LogIndex}): " +
             $"{stats.DivergentPages} of {stats.UnionPages} pages came from the primary");
    }

    /// <summary>MAIN thread (primary): the full sync with a (re)joined backup completed: say so in the log.</summary>
    private void FinishReprotection()
    {
        _runsAlone = false;
        _aloneProposed = false;
        Guard.Protect();   // normally already holding since the backup connected, unless it went away in between
        int peer = _options.PeerId;
        Event($"protected again by node {peer}");
        _log($"replica {_driver.SelfId}: PROTECTED again: node {peer} is synced");
        _driver.Propose(EntryType.Role, EntryPayloads.EncodeRole(_driver.Ballot, _driver.SelfId, peer));
    }

    /// <summary>
    /// The primary's link to its backup, every 20 ms: a new sync connection means a (re)joined backup, which gets a
    /// full sync at once (and protection back); a backup gone for <see cref="ReplicaOptions.BackupLoss"/> is dropped
    /// by a ROLE entry, after which output leaves unprotected.
    /// </summary>
    private void Watchdog()
    {
        while (!_stop.Wait(20))
        {
            if (_role != ReplicaRole.Primary || _fenced || !_driver.IsLeader) { _linkDownSince = 0; continue; }
            var connection = Engine.Connection;
            bool up = connection is { IsClosed: false };
            if (up && !ReferenceEquals(connection, _lastConnection))
            {
                // The backup behind a new connection may have restarted: the next sync compares every page, at
                // once. Not so for the first connection of a fresh cluster: its first sync is full anyway and comes
                // with the first idle moment (and this loop may see the connection only after that sync completed).
                bool first = _lastConnection is null && !_runsAlone;
                _lastConnection = connection;
                _linkDownSince = 0;
                if (first) continue;
                _nextSyncFull = true;
                _host.Main.Post(() =>
                {
                    if (_role != ReplicaRole.Primary || _fenced) return;
                    if (_runsAlone) Guard.Protect();   // from here the output waits for the joining backup's ack
                    if (!ProposeSync()) _lastConnection = null;   // retried on the next round
                });
                continue;
            }
            // A partitioned backup leaves its connections looking up: consensus tells whether it still answers.
            if (up && _driver.SilenceMs(_options.PeerId) < _options.BackupLoss.TotalMilliseconds / 2) { _linkDownSince = 0; continue; }
            // A fresh cluster's backup that has not connected yet is not lost (the start-up gate waits for it).
            // (Counted by the engine: a backup can connect and die between two of these rounds.)
            if (Engine.ConnectionsSet == 0 && !_runsAlone) continue;
            long now = Environment.TickCount64;
            if (_linkDownSince == 0) { _linkDownSince = now; continue; }
            if (now - _linkDownSince < _options.BackupLoss.TotalMilliseconds) continue;
            if (_runsAlone)
            {
                // A backup that was joining went away before its full sync: output must not wait for it.
                if (Guard.State == GuardState.Holding)
                    _host.Main.Post(() => { if (_runsAlone && _role == ReplicaRole.Primary) CountRelease(Guard.RunUnprotected("the joining backup went away")); });
                continue;
            }
            if (_aloneProposed) continue;
            // A sync waiting for the lost backup would hold the VM stopped until its frame timeout: abort it now.
            Engine.Connection?.Dispose();
            _aloneProposed = _driver.Propose(EntryType.Role, EntryPayloads.EncodeRole(_driver.Ballot, _driver.SelfId, 0));
            if (_aloneProposed)
            {
                Event($"backup lost for {now - _linkDownSince} ms: ROLE(no backup) proposed");
                _log($"replica {_driver.SelfId}: the backup has been unreachable for {now - _linkDownSince} ms: proposing to run " +
                     "without it (output is released unprotected once that commits)");
            }
        }
    }

    private void Event(string what)
    {
        _events.Enqueue(((DateTime.UtcNow - DateTime.UnixEpoch).Ticks / 10, what));
        while (_events.Count > 64) _events.TryDequeue(out _);
    }

    /// <summary>digest' = CityHash64(digest | index | CityHash64(payload)), all little-endian u64.</summary>
    private static ulong ChainDigest(ulong digest, long index, ReadOnlySpan<byte> payload)
    {
        Span<ulong> words = [digest, (ulong)index, CityHash.Hash64(payload)];
        return CityHash.Hash64(System.Runtime.InteropServices.MemoryMarshal.AsBytes(words));
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
