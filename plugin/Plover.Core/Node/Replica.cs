using System.Collections.Concurrent;
using Plover.Consensus;
using Plover.Guard;
using Plover.Hashing;
using Plover.Idle;
using Plover.Metrics;
using Plover.Sync;

namespace Plover.Node;

/// <summary>
/// One VM replica (primary or backup) wired to consensus, syncvm, the output guard and the idle trigger
/// (design.md section 4):
/// <list type="bullet">
/// <item>Frames going into the guest are stolen (<see cref="OnFrameToGuest"/>): the primary batches them into INPUT
///   proposals, the backup drops them (its guest gets the primary's inputs from the log).</item>
/// <item>Committed entries are applied on the main thread in log order, on both replicas: INPUT frames are injected;
///   a SYNC entry stops the VM in the same main-thread callback that injected everything before it, so both VMs stop
///   at exactly that log position, and then the <see cref="SyncEngine"/> runs (off the main thread). Entries after the
///   SYNC wait until the VM runs again.</item>
/// <item>The primary proposes SYNC when the idle monitor says the guest is idle or the epoch is too long.</item>
/// <item>The engine cuts, releases (primary, after the ack) and discards (backup) output epochs through the guard;
///   a backup elected leader is promoted (guard releases, announce), a deposed leader is fenced for good.</item>
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
    private readonly ConsensusDriver _driver;
    private readonly Action<string> _log;
    private readonly ReplicaInputBatcher _batcher;
    private readonly ConcurrentQueue<LogEntry> _committed = new();
    private readonly List<ReadOnlyMemory<byte>> _frames = new();   // main thread: decoded INPUT batch
    private readonly Action _drain;   // cached: posted once per batch of commits
    private IdleMonitor? _idle;
    private long _outputReports, _outputReportsAtCut;   // main thread: "the guest sent frames that are now held"
    private int _drainPosted;
    private bool _syncing;            // main thread: a sync runs; later entries wait
    private ulong _lastSyncEpoch;     // written on the main thread
    private ulong _proposedEpoch;     // under _epochLock
    private readonly Lock _epochLock = new();
    private volatile bool _firstSyncDone;
    private volatile ReplicaRole _role;
    private volatile bool _runsAlone; // a promoted backup: no peer to sync with
    private volatile bool _fenced;
    private volatile bool _started;
    private volatile bool _disposed;
    private long _inputsInjected, _framesInjected, _injectFailures, _framesDroppedBackup, _syncsCompleted, _syncsAborted;
    private long _lastAppliedIndex;
    private ulong _inputDigest;       // main thread: chain over (index, payload) of every INPUT injected
    private readonly ProposalClock _proposalClock = new();
    private long _inputsAtLastSync;   // _inputsInjected when the last sync stopped the VM
    private long _triggersIdle, _triggersMaxEpoch, _triggersNothingNew, _triggersRefused;

    public Replica(ReplicaOptions options, IReplicaHost host, ConsensusDriver driver)
    {
        _options = options;
        _host = host;
        _driver = driver;
        _log = options.Log;
        _role = options.Role;
        _drain = Drain;
        bool primary = options.Role == ReplicaRole.Primary;
        Guard = new OutputGuard(primary ? GuardRole.Primary : GuardRole.Backup, host.OutputPorts, _log);
        var syncOptions = options.Sync.Log is null ? CopyWithLog(options.Sync, _log) : options.Sync;
        Engine = new SyncEngine(primary ? SyncRole.Primary : SyncRole.Backup, host.Memory, host.Vm, host.Main, Guard, syncOptions);
        _batcher = new ReplicaInputBatcher(options.MaxInputEntryBytes, options.MaxPendingInputBytes,
            payload => _proposalClock.Propose(() => _driver.Propose(EntryType.Input, payload.Span)));
        driver.Committed = OnCommitted;
        driver.StateChanged = OnStateChanged;
        driver.Fenced = OnFenced;
        driver.SnapshotNeeded = s => _log($"replica {driver.SelfId}: the log before index {s.Index} is gone at leader {s.LeaderId}: this replica needs a full sync (not handled yet)");
    }

    public OutputGuard Guard { get; }
    public SyncEngine Engine { get; }
    public ReplicaRole Role => _role;
    public bool IsFenced => _fenced;
    public ulong LastSyncEpoch => Volatile.Read(ref _lastSyncEpoch);
    /// <summary>Index of the last committed entry applied to the guest (injected, or the SYNC the VM stopped at).</summary>
    public long LastAppliedIndex => Volatile.Read(ref _lastAppliedIndex);
    public long InputsInjected => Volatile.Read(ref _inputsInjected);
    public long FramesInjected => Volatile.Read(ref _framesInjected);
    public long InjectFailures => Volatile.Read(ref _injectFailures);
    /// <summary>Primary: frames queued for proposal; dropped ones (backlog full, not leader) in <see cref="FramesDropped"/>.</summary>
    public long FramesStolen => _batcher.FramesQueued;
    public long FramesDropped => _batcher.FramesDropped + Volatile.Read(ref _framesDroppedBackup);
    public long SyncsCompleted => Volatile.Read(ref _syncsCompleted);
    public long SyncsAborted => Volatile.Read(ref _syncsAborted);
    /// <summary>Running digest of every INPUT entry injected so far, in log order (equal on both replicas at equal
    /// log positions); recorded per sync in <see cref="SyncStats.InputDigest"/>.</summary>
    public ulong InputDigest => Volatile.Read(ref _inputDigest);
    /// <summary>Primary: proposal-to-commit latency of INPUT entries.</summary>
    public LatencyHistogram CommitLatency => _proposalClock.Latency;
    public long EntriesProposed => _batcher.EntriesProposed;
    /// <summary>What the idle monitor asked for: syncs proposed because the guest idled or the epoch reached its
    /// maximum, idle moments skipped because nothing came in since the last sync, proposals refused.</summary>
    public (long Idle, long MaxEpoch, long NothingNew, long Refused) SyncTriggers =>
        (Interlocked.Read(ref _triggersIdle), Interlocked.Read(ref _triggersMaxEpoch),
         Interlocked.Read(ref _triggersNothingNew), Interlocked.Read(ref _triggersRefused));

    /// <summary>Every sync's outcome (on the engine's continuation thread, before the VM's next entries are applied).</summary>
    public event Action<SyncStats>? SyncFinished;

    /// <summary>MAIN thread, once, before the guest runs: hold output, start the idle monitor (primary), apply the log.</summary>
    public void Start()
    {
        if (_started) return;
        Guard.Start();
        if (_role == ReplicaRole.Primary && _options.VcpuThreadIds is { } tids && _options.Idle is { } idle)
            _idle = new IdleMonitor(idle, tids, OnIdleTrigger, _options.CpuTime);
        _started = true;
        PostDrain();
        _log($"replica {_driver.SelfId}: started as {_role.ToString().ToLowerInvariant()}, {_host.OutputPorts.Count} NIC(s), " +
             $"syncs {(_idle is null ? "on request" : "at idle or max epoch")}");
    }

    // ------------------------------------------------------------------ inputs

    /// <summary>
    /// MAIN thread (net_to_guest): a frame on its way into this guest. Always consumed: the primary proposes it (it
    /// reaches the guest when committed), the backup drops it (its guest gets the primary's inputs from the log).
    /// </summary>
    public bool OnFrameToGuest(int nic, ReadOnlySpan<byte> frame)
    {
        if (_role == ReplicaRole.Primary && _started && !_fenced && !_disposed) _batcher.Add(nic, frame);
        else Interlocked.Increment(ref _framesDroppedBackup);
        return true;
    }

    /// <summary>
    /// Proposes a SYNC entry with the next epoch (any thread). False if this replica cannot: not the primary, not
    /// the consensus leader, fenced, running alone, or without a sync connection to the backup (the sync would abort).
    /// </summary>
    public bool ProposeSync()
    {
        if (_role != ReplicaRole.Primary || _fenced || _runsAlone || _disposed || !_driver.IsLeader) return false;
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
    /// nothing new to make safe, so it is not stopped again (a guest idle for minutes would otherwise be stopped every few hundred
    /// microseconds); the maximum epoch always syncs. Re-arms itself when no sync will follow.
    /// </summary>
    private void OnIdleTrigger(SyncTrigger trigger)
    {
        // The monitor's thread can fire before its constructor returned and _idle was set: wait for it (a trigger
        // that returned without re-arming would pause the monitor for good).
        IdleMonitor? idle = null;
        SpinWait.SpinUntil(() => (idle = Volatile.Read(ref _idle)) is not null || _disposed, 1000);
        if (idle is null) return;
        bool nothingNew = trigger == SyncTrigger.Idle && _firstSyncDone &&
                          Volatile.Read(ref _inputsInjected) == Volatile.Read(ref _inputsAtLastSync) &&
                          Volatile.Read(ref _outputReports) == Volatile.Read(ref _outputReportsAtCut);
        if (nothingNew || !ProposeSync())
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
        if (Interlocked.Exchange(ref _drainPosted, 1) == 0) _host.Main.Post(_drain);
    }

    /// <summary>MAIN thread: applies committed entries in order until the queue is empty or a SYNC stops the VM.</summary>
    private void Drain()
    {
        Volatile.Write(ref _drainPosted, 0);
        if (!_started || _syncing || _disposed) return;
        int budget = MaxEntriesPerDrain;
        while (_committed.TryDequeue(out var entry))
        {
            switch (entry.Type)
            {
                case EntryType.Input:
                    Inject(entry);
                    break;
                case EntryType.Sync:
                    if (BeginSync(entry)) return;
                    break;
                case EntryType.Role:
                    _log($"replica {_driver.SelfId}: ROLE entry at {entry.Index} ignored (role entries are not acted on yet)");
                    break;
            }
            Volatile.Write(ref _lastAppliedIndex, entry.Index);
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
        if (epoch <= _lastSyncEpoch) return false;   // a duplicate proposal: the first one with this epoch counted
        Volatile.Write(ref _lastSyncEpoch, epoch);
        if (_runsAlone)
        {
            _log($"replica {_driver.SelfId}: SYNC e{epoch} at {entry.Index} skipped: running alone");
            return false;
        }
        // Every entry before this one was injected in this same callback (or an earlier one) and none after it
        // will be until the sync is over: both VMs stop at the same log position.
        _syncing = true;
        Volatile.Write(ref _inputsAtLastSync, _inputsInjected);
        Volatile.Write(ref _outputReportsAtCut, _outputReports);
        Volatile.Write(ref _lastAppliedIndex, entry.Index);
        var request = new SyncRequest(epoch, entry.Index, FullSync: !_firstSyncDone && _options.FirstSyncFull, InputDigest: _inputDigest);
        StopAndSync(request);
        return true;
    }

    /// <summary>MAIN thread: stop the VM at the cut and run the sync (the engine's own stop is then a no-op).</summary>
    private void StopAndSync(SyncRequest request)
    {
        if (_disposed) return;
        try { _host.Vm.Stop(); }
        catch (Exception e) { _log($"replica {_driver.SelfId}: vm_stop at SYNC e{request.Epoch} failed: {e.Message}"); }
        Engine.RunAsync(request).ContinueWith(t => SyncDone(request, t), TaskScheduler.Default);
    }

    /// <summary>MAIN thread (net_from_guest): the guest sent frames that are now held. Output waiting in the open
    /// epoch needs a sync to be released, even when no input came in.</summary>
    public void OnOutputHeld(int nic, ulong openEpoch, ulong heldFrames)
    {
        if (heldFrames > 0) Volatile.Write(ref _outputReports, _outputReports + 1);
    }

    // The engine's thread pool continuation: the VM runs again (the engine restarted it, completed or not).
    private void SyncDone(SyncRequest request, Task<SyncStats> task)
    {
        SyncStats? stats = task.IsCompletedSuccessfully ? task.Result : null;
        if (stats is { Outcome: SyncOutcome.Completed })
        {
            _firstSyncDone = true;
            Interlocked.Increment(ref _syncsCompleted);
            _driver.Compact(request.LogIndex);   // the VM state now covers everything up to the SYNC entry
        }
        else
        {
            Interlocked.Increment(ref _syncsAborted);
            _log($"replica {_driver.SelfId}: sync e{request.Epoch} at {request.LogIndex} aborted: {stats?.Error ?? task.Exception?.GetBaseException().Message}");
        }
        if (_idle is { } idleMonitor)
        {
            if (stats is { Outcome: SyncOutcome.Completed }) idleMonitor.EpochStarted();
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
            _syncing = false;
            Drain();
        });
    }

    // ------------------------------------------------------------------ roles

    // Under the consensus core lock.
    private void OnStateChanged(ConsensusStatus status)
    {
        if (status.Role != ConsensusRole.Leader) _proposalClock.Clear();
        if (status.Role == ConsensusRole.Leader && _role == ReplicaRole.Backup && !_fenced && !_disposed)
            _host.Main.Post(Promote);
    }

    /// <summary>MAIN thread: this backup won an election, so the primary is gone: release what it holds and serve.</summary>
    private void Promote()
    {
        if (_role == ReplicaRole.Primary || _fenced || _disposed) return;
        if (Engine.StateInvalid)
        {
            _log($"replica {_driver.SelfId}: elected leader but its VM state is invalid (a failed apply): output stays held");
            return;
        }
        _runsAlone = true;
        _role = ReplicaRole.Primary;
        Guard.Promote();
        _host.Announce();
        _log($"replica {_driver.SelfId}: promoted to primary in ballot {_driver.Ballot}; running without a backup");
    }

    // Any thread (the guard's fence is thread-safe and one-way).
    private void OnFenced(Fence fence)
    {
        Guard.Fence($"deposed: no longer leader of ballot {fence.Ballot} ({fence.Reason})");
        _fenced = true;   // after the guard: IsFenced true means nothing can be released any more
    }

    /// <summary>digest' = CityHash64(digest | index | CityHash64(payload)), all little-endian u64.</summary>
    private static ulong ChainDigest(ulong digest, long index, ReadOnlySpan<byte> payload)
    {
        Span<ulong> words = [digest, (ulong)index, CityHash.Hash64(payload)];
        return CityHash.Hash64(System.Runtime.InteropServices.MemoryMarshal.AsBytes(words));
    }

    private static SyncOptions CopyWithLog(SyncOptions o, Action<string> log) => new()
    {
        Timeout = o.Timeout, HashThreads = o.HashThreads, PagesPerFrame = o.PagesPerFrame, HashesPerFrame = o.HashesPerFrame,
        MaxDeviceStateBytes = o.MaxDeviceStateBytes, SendAllDirty = o.SendAllDirty, HistoryLength = o.HistoryLength,
        StepHook = o.StepHook, Log = log,
    };

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _driver.Committed = null;
        _driver.StateChanged = null;
        _driver.Fenced = null;
        _driver.SnapshotNeeded = null;
        _idle?.Dispose();
        _batcher.Dispose();
        Engine.Dispose();
    }
}
