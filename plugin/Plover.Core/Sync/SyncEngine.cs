using System.Collections.Concurrent;
using System.Diagnostics;
using System.Numerics;
using Google.Protobuf;
using Plover.Guard;
using Plover.Hashing;
using Plover.Transport;
using Plover.Wire;
using Plover.Platform;

namespace Plover.Sync;

/// <summary>
/// syncvm for one replica (docs/architecture.md section 4). Given a sync (epoch, log index) that both replicas reached, it
/// stops the VM, exchanges and ORs the dirty bitmaps, hashes the union on every core straight from guest RAM,
/// and then either (primary) sends the pages whose hashes differ plus the device state and waits for the ack, or
/// (backup) sends its hashes, stages everything it receives and applies it in one step only once it all arrived.
///
/// Threads: VM control, the output guard and ram_updated run on the host's main thread through
/// <see cref="IMainThread"/>, as short actions; waiting, hashing and transfer run on the engine's own thread
/// (created here, at init) while the VM is stopped, so QEMU's main loop is never blocked by the network.
///
/// Failure: any error (peer lost, timeout, bad frame, host call failed) aborts the sync. Neither side clears its
/// dirty bitmap then, so the next sync still covers every page that may differ; the backup's RAM and devices are
/// untouched (staging is discarded); both VMs resume; the sync connection is closed (the node reconnects). On the
/// primary the output of this epoch stays held (see <see cref="OutputGuard"/> for the run-unprotected policy).
/// </summary>
public sealed unsafe partial class SyncEngine : IDisposable
{
    private const int DeviceStateChunk = 16 << 20;

    private readonly IGuestMemory _memory;
    private readonly IVmHost _vm;
    private readonly IMainThread _main;
    private readonly OutputGuard? _guard;
    private readonly SyncOptions _options;
    private readonly Action<string> _log;
    private readonly PageHasher _hasher;
    private SyncLayout? _layout;

    // Reused across syncs (grown, never shrunk): nothing per page is allocated.
    private readonly NativeBuffer<ulong> _local = new();        // this side's dirty bitmap, gathered
    private readonly NativeBuffer<ulong> _union = new();        // OR of both sides' bitmaps
    private readonly NativeBuffer<ulong> _localHashes = new();  // hashes of union pages, page order
    private readonly NativeBuffer<ulong> _remoteHashes = new(); // primary: the backup's
    private readonly NativeBuffer<ulong> _pageList = new();     // primary: divergent pages; backup: staged pages
    private readonly NativeBuffer<byte> _staging = new();       // backup: staged page data (whole pages or sub-blocks)
    // Sub-block mode (see SyncOptions.SubBlockBytes): the divergent list as a bitmap over union indices, both
    // sides' sub-block hashes of one chunk, and one mask per divergent page (primary: computed; backup: staged).
    private readonly NativeBuffer<ulong> _divergentBits = new();
    private readonly NativeBuffer<ulong> _localSub = new();
    private readonly NativeBuffer<ulong> _remoteSub = new();
    private readonly NativeBuffer<ulong> _masks = new();
    private readonly NativeBuffer<ulong> _roots = new();          // primary, sub-blocks: the root of each page's sub-block hashes
    private readonly NativeBuffer<ulong> _expectedHashes = new(); // backup, sub-blocks: the primary's root of each divergent page
    private readonly NativeBuffer<byte> _failed = new();          // backup, sub-blocks: 1 for a page that failed its check
    private readonly NativeBuffer<byte> _repairStaging = new();   // backup, sub-blocks: those pages, sent again whole
    private readonly NativeBuffer<ulong> _repairBits = new();     // the REPAIR list: bits over the divergent list
    private readonly NativeBuffer<ulong> _applyOffsets = new();  // backup, sub-blocks: where each page starts in staging
    private readonly NativeBuffer<int> _differences = new();     // backup: bytes and blocks each applied page changed
    private readonly NativeBuffer<ulong> _divergentPages = new(); // primary, early resume at the compare: a global bitmap
    private readonly PageWorkers _workers;                     // sub-block hashing and the union's copy, on every core
    private readonly PageSnapshot _snapshot = new();            // primary, early resume: the union's or divergent pages at the cut
    private readonly SubBlockPagesBody _subPagesBody = new();
    private int _syncSubBlockBytes;                              // this sync's sub-block size (0: whole pages)
    private int _syncSubBlockHashBytes = 8;                      // backup: this sync's sub-block hash length (shorter: pages checked)

    /// <summary>Backup: bytes held for staging pages between syncs (tests).</summary>
    internal ulong StagingBytes => _staging.Capacity;
    private readonly ByteBuffer _deviceState = new(1 << 20);    // primary: saved; backup: received
    private readonly DeviceStateSections _deviceSections = new(); // this side's own saved sections
    private readonly ByteBuffer _ownDeviceState = new(1 << 16); // backup, delta: its own state, saved at the cut
    private readonly ByteBuffer _deviceDelta = new(1 << 16);    // primary: the delta; backup: the stream rebuilt from it
    private readonly ByteBuffer _peerSummary = new(1 << 14);    // primary: the backup's section summary
    private readonly PendingDeviceSave _pendingSave;             // this side's save at the cut, on the main thread
    private readonly Action _savePrimary, _saveOwn;             // what it saves: into _deviceState, into _ownDeviceState
    private uint _peerSections;
    private readonly DeviceStateDelta _delta = new();
    private ReadOnlyMemory<byte> _deviceToLoad;                 // backup: what Apply loads
    private readonly DeviceHashesBody _deviceHashesBody = new();
    private bool _syncDeviceDelta;                               // this sync compares device state sections
    private bool _syncCheckpoint;                                // this sync runs in checkpoint mode (its request's)
    private bool _syncOwnDirt;                                   // backup, checkpoint sync: its own bitmap counts
    private bool _sectionsWarned;
    private readonly BitmapBody _bitmapBody = new();
    private readonly HashesBody _hashesBody = new();
    private readonly PagesBody _pagesBody = new();
    private readonly DeviceStateBody _deviceBody = new();
    private readonly ControlBody _controlBody = new();
    private readonly SyncHeaders _headers = new();              // received headers, parsed into reused instances
    private volatile SyncRole _role;

    private readonly BlockingCollection<(SyncRequest Request, TaskCompletionSource<SyncStats> Done)> _jobs = new();
    private readonly Thread _thread;
    private volatile SyncConnection? _connection;
    private readonly Lock _runLock = new();
    private bool _vmStopped;
    private long _guestStoppedAt;      // timestamp of this sync's vm_stop (the replica's, or this engine's request)
    private bool _resumedEarly;        // this sync's guest runs again although the sync is not over
    private bool _markAllAtNextStop;   // a sync that resumed early aborted: its union's dirt was cleared
    private (SyncConnection? On, SyncBegin? Begin) _laterBegin;   // backup: a superseded sync's SyncBegin, for the next sync
    private volatile bool _stateInvalid;

    /// <param name="disks">The replicated drives (null or none: RAM and devices only).</param>
    public SyncEngine(SyncRole role, IGuestMemory memory, IVmHost vm, IMainThread main, OutputGuard? guard, SyncOptions? options = null,
                      IDiskHost? disks = null)
    {
        _role = role;
        _diskHost = disks;
        _memory = memory;
        _vm = vm;
        _main = main;
        _guard = guard;
        _pendingSave = new PendingDeviceSave(main);
        _savePrimary = () => SaveDevices(_deviceState);
        _saveOwn = () => SaveDevices(_ownDeviceState);
        _options = options ?? new SyncOptions();
        if (_options.PagesPerFrame < 1 || _options.PagesPerFrame > 8192) throw new ArgumentOutOfRangeException(nameof(options), "PagesPerFrame must be 1..8192");
        if (_options.PutPagesPerBatch < 1 || _options.PutPagesPerBatch > 8192) throw new ArgumentOutOfRangeException(nameof(options), "PutPagesPerBatch must be 1..8192");
        if (_options.HashesPerFrame < 1 || _options.HashesPerFrame > 1 << 20) throw new ArgumentOutOfRangeException(nameof(options), "HashesPerFrame must be 1..1048576");
        _log = _options.Log ?? (m => Console.Error.WriteLine(m));
        if (_options.SubBlockBytes != 0 && !SyncProtocol.IsValidSubBlockSize(_options.SubBlockBytes))
            throw new ArgumentOutOfRangeException(nameof(options), $"SubBlockBytes must be 0 (whole pages) or a power of two in " +
                                                  $"{SyncProtocol.MinSubBlockBytes}..{SyncProtocol.MaxSubBlockBytes}, not {_options.SubBlockBytes}");
        if (!SyncProtocol.IsValidSubBlockHashBytes(_options.SubBlockHashBytes))
            throw new ArgumentOutOfRangeException(nameof(options), $"SubBlockHashBytes must be 1, 2, 4 or 8, not {_options.SubBlockHashBytes}");
        if (_options.SubBlockChunkPages < 1 || _options.SubBlockChunkPages > SyncProtocol.MaxChunkPages)
            throw new ArgumentOutOfRangeException(nameof(options), $"SubBlockChunkPages must be 1..{SyncProtocol.MaxChunkPages}");
        if (_options.DiskChunkBytes < GuestRamBlock.PageSize || (ulong)(_options.DiskChunkBytes / GuestRamBlock.PageSize) > SyncProtocol.MaxDiskChunkBlocks)
            throw new ArgumentOutOfRangeException(nameof(options), $"DiskChunkBytes must be {GuestRamBlock.PageSize}..{SyncProtocol.MaxDiskChunkBlocks * GuestRamBlock.PageSize}, " +
                                                  $"not {_options.DiskChunkBytes}");
        _hasher = new PageHasher(_options.HashThreads);
        _workers = new PageWorkers(_hasher.Threads);
        Metrics = new SyncMetrics(_options.HistoryLength);
        _thread = ThreadScheduling.Start(ThreadLoop, $"plover-sync-{role.ToString().ToLowerInvariant()}", ThreadScheduling.Priority.High, _log);
        _thread.Start();
    }

    /// <summary>Primary, early resume: raised on the main thread right after the guest resumed while the sync goes on
    /// (its output stays held until the ack). The replica lets later entries into the guest from here on.</summary>
    public event Action<SyncRequest>? ResumedEarly;

    /// <summary>Primary or backup; changes (failover, demotion) only while no sync runs (see <see cref="SetRole"/>).</summary>
    public SyncRole Role => _role;

    /// <summary>Switches the side this engine plays in later syncs (a promoted backup, a deposed primary).</summary>
    public void SetRole(SyncRole role)
    {
        lock (_runLock) _role = role;
    }
    public SyncMetrics Metrics { get; }

    /// <summary>Backup, replicate mode: what the divergent pages looked like, over every sync (see
    /// <see cref="DivergenceStats"/>); empty on a primary.</summary>
    public DivergenceStats Divergence { get; } = new();

    /// <summary>
    /// Backup only: true once an apply failed after guest RAM had been written (the host refused the device state),
    /// or a sync failed after it wrote disk blocks ahead of the apply (it sent more than a chunk's worth, see
    /// <see cref="SyncOptions.DiskChunkBytes"/>). RAM, disk and devices then belong to different states: this backup
    /// must not be promoted until the next completed sync (an ordinary one suffices: neither side cleared its dirt, so
    /// the union still covers every written page and block).
    /// </summary>
    public bool StateInvalid => _stateInvalid;

    /// <summary>The authenticated link to the peer engine; null when there is none. Closed and cleared by an abort.</summary>
    public SyncConnection? Connection
    {
        get => _connection;
        set
        {
            _connection = value;
            if (value is not null) Interlocked.Increment(ref _connectionsSet);
        }
    }

    /// <summary>How many connections were ever attached (0: the peer never connected).</summary>
    public long ConnectionsSet => Interlocked.Read(ref _connectionsSet);
    private long _connectionsSet;

    /// <summary>
    /// Between syncs, whether the peer closed the link (a dead backup is otherwise noticed only by the next sync,
    /// and a link that looks up is never replaced by the peer's new one). Disposes the connection if so; skipped
    /// while a sync runs (it reads the connection itself). Any thread.
    /// </summary>
    public bool CheckIdleConnection()
    {
        if (!_runLock.TryEnter()) return _connection is { IsClosed: false };
        try
        {
            if (_jobs.Count > 0) return _connection is { IsClosed: false };
            var c = _connection;
            if (c is null) return false;
            if (!c.PeerHasClosed()) return true;
            c.Dispose();
            Interlocked.CompareExchange(ref _connection, null, c);
            _log($"sync link: the {(Role == SyncRole.Primary ? "backup" : "primary")} closed the connection");
            return false;
        }
        finally { _runLock.Exit(); }
    }

    /// <summary>Queues a sync on the engine's thread.</summary>
    public Task<SyncStats> RunAsync(SyncRequest request)
    {
        var done = new TaskCompletionSource<SyncStats>(TaskCreationOptions.RunContinuationsAsynchronously);
        _jobs.Add((request, done));
        return done.Task;
    }

    /// <summary>Runs one sync on the calling thread (a library thread, never the host's main thread); never throws
    /// for protocol or peer failures: the outcome and reason are in the returned stats.</summary>
    public SyncStats Run(SyncRequest request)
    {
        lock (_runLock) return RunLocked(request);
    }

    private SyncStats RunLocked(SyncRequest request)
    {
        if (request.IsJoin) return RunJoin();
        bool checkpoint = request.Checkpoint ?? _options.Checkpoint;
        bool nextCheckpoint = request.NextCheckpoint ?? checkpoint;
        var stats = new SyncStats
        {
            Role = Role, Epoch = request.Epoch, LogIndex = request.LogIndex, FullSync = request.FullSync, InputDigest = request.InputDigest,
            Checkpoint = checkpoint, NextCheckpoint = nextCheckpoint, StartedUtc = DateTime.UtcNow, Lead = request.Lead,
        };
        _syncCheckpoint = checkpoint;
        _syncOwnDirt = request.BackupOwnDirt;
        long start = Stopwatch.GetTimestamp();
        _guestStoppedAt = request.StoppedAt != 0 && request.StoppedAt < start ? request.StoppedAt : start;
        var connection = WaitForConnection(Role == SyncRole.Backup ? _options.Timeout : TimeSpan.Zero);
        _vmStopped = false;
        _resumedEarly = false;
        try
        {
            if (connection is null || connection.IsClosed)
                throw new SyncConnectionException($"no {(Role == SyncRole.Primary ? "backup" : "primary")} connected");
            _layout ??= new SyncLayout(_memory.Blocks);
            connection.SendTimeout = _options.Timeout;
            if (Role == SyncRole.Primary)
            {
                _syncDeviceDelta = _options.DeviceStateDelta && !_syncCheckpoint && !request.FullSync;
                _syncDisks = Disks is not null;
                _diskChunkBlocks = OwnDiskChunkBlocks;
                stats.Wire.Control += connection.Send(_controlBody.Set(FrameType.SyncBegin, new SyncBegin
                {
                    Disks = _syncDisks, DiskChunkBlocks = _diskChunkBlocks,
                    DiskGeneration = _syncDisks ? _diskHost!.Generation.Number : 0,
                    Epoch = request.Epoch, LogIndex = request.LogIndex, FullSync = request.FullSync, InputDigest = request.InputDigest,
                    DeviceDelta = _syncDeviceDelta, Checkpoint = checkpoint, NextCheckpoint = nextCheckpoint,
                }));
                RunPrimary(connection, request, stats);
            }
            else
            {
                var begin = TakeLaterBegin(connection) ?? ReadBegin(connection, _options.Timeout, stats);
                if (begin.Epoch > request.Epoch && begin.LogIndex > request.LogIndex)
                {
                    // The primary is at a later cut (it skipped or aborted this one): this sync is superseded, not
                    // broken. Keep the link and the SyncBegin for the backup's sync of that cut, which it reaches
                    // next; aborting here would close the link and abort the primary's sync too, again and again.
                    _laterBegin = (connection, begin);
                    throw new SyncSupersededException($"superseded: the primary runs sync e{begin.Epoch} at log index {begin.LogIndex}; " +
                                                      $"this backup stopped for e{request.Epoch} at {request.LogIndex}");
                }
                if (begin.Epoch != request.Epoch || begin.LogIndex != request.LogIndex)
                    throw new SyncProtocolException($"the primary runs sync e{begin.Epoch} at log index {begin.LogIndex}; " +
                                                    $"this backup stopped for e{request.Epoch} at {request.LogIndex}");
                if (begin.Checkpoint != checkpoint || begin.NextCheckpoint != nextCheckpoint)
                    throw new SyncProtocolException($"the primary runs sync e{begin.Epoch} as {ModeName(begin.Checkpoint)} (then {ModeName(begin.NextCheckpoint)}), " +
                                                    $"this backup's log says {ModeName(checkpoint)} (then {ModeName(nextCheckpoint)}): " +
                                                    "sync.mode must be the same on both replicas");
                CheckDisks(begin);
                if (begin.FullSync && !request.FullSync) request = request with { FullSync = true };
                _syncDeviceDelta = begin.DeviceDelta;   // the primary's choice: it waits for the section hashes
                if (begin.InputDigest != request.InputDigest)
                {
                    // Not the same inputs up to the cut: the dirty pages need not cover the difference, so compare
                    // every page, and follow the primary's digest from here on.
                    _log($"sync e{request.Epoch}: INPUTS DIVERGED: the primary's input digest at log index {request.LogIndex} " +
                         $"is {begin.InputDigest:x16}, this backup's {request.InputDigest:x16}: comparing every page");
                    stats.InputsDiverged = true;
                    stats.InputDigest = begin.InputDigest;
                    request = request with { FullSync = true };
                }
                stats.FullSync = request.FullSync;
                RunBackup(connection, request, stats);
            }
            stats.Outcome = SyncOutcome.Completed;
            _stateInvalid = false;
        }
        catch (Exception e)
        {
            Abort(connection, request, stats, e);
        }
        stats.Pause.Total = Microseconds(start);
        if (!stats.ResumedEarly) stats.Pause.Guest = Microseconds(_guestStoppedAt);
        Metrics.Record(stats);
        return stats;
    }

    /// <summary>A joining backup: wait for the primary's next SyncBegin, then run that sync (always full) as backup.</summary>
    private SyncStats RunJoin()
    {
        var connection = _connection;
        var placeholder = new SyncStats { Role = Role, StartedUtc = DateTime.UtcNow, FullSync = true };
        SyncBegin begin;
        try
        {
            if (Role != SyncRole.Backup) throw new InvalidOperationException("only a backup joins");
            long deadline = Environment.TickCount64 + (long)_options.JoinTimeout.TotalMilliseconds;
            connection = WaitForConnection(_options.JoinTimeout) ?? throw new SyncConnectionException("no primary connected");
            begin = TakeLaterBegin(connection) ??
                    ReadBegin(connection, TimeSpan.FromMilliseconds(Math.Max(1, deadline - Environment.TickCount64)), placeholder);
        }
        catch (Exception e)
        {
            Abort(connection, SyncRequest.Join, placeholder, e);
            Metrics.Record(placeholder);
            return placeholder;
        }
        var request = new SyncRequest(begin.Epoch, begin.LogIndex, FullSync: true, InputDigest: begin.InputDigest)
        {
            Checkpoint = begin.Checkpoint, NextCheckpoint = begin.NextCheckpoint,
        };
        _syncDeviceDelta = begin.DeviceDelta;
        _syncCheckpoint = begin.Checkpoint;
        _syncOwnDirt = false;   // a full sync: the primary marks every page
        try { CheckDisks(begin); }
        catch (Exception e)
        {
            Abort(connection, request, placeholder, e);
            Metrics.Record(placeholder);
            return placeholder;
        }
        var stats = new SyncStats
        {
            Role = Role, Epoch = request.Epoch, LogIndex = request.LogIndex, FullSync = true, InputDigest = request.InputDigest,
            StartedUtc = DateTime.UtcNow, Joined = true, Checkpoint = begin.Checkpoint, NextCheckpoint = begin.NextCheckpoint,
        };
        stats.Wire.Control += placeholder.Wire.Control;
        long start = Stopwatch.GetTimestamp();
        _vmStopped = false;
        _resumedEarly = false;
        try
        {
            _layout ??= new SyncLayout(_memory.Blocks);
            connection.SendTimeout = _options.Timeout;
            RunBackup(connection, request, stats);
            stats.Outcome = SyncOutcome.Completed;
            _stateInvalid = false;
        }
        catch (Exception e)
        {
            Abort(connection, request, stats, e);
        }
        stats.Pause.Total = Microseconds(start);
        stats.Pause.Guest = stats.Pause.Total;
        Metrics.Record(stats);
        return stats;
    }

    /// <summary>Backup: the primary's sync carries drives exactly when this backup replicates drives too.</summary>
    private void CheckDisks(SyncBegin begin)
    {
        bool mine = Disks is not null;
        if (begin.Disks != mine)
            throw new SyncProtocolException(mine ? "this backup replicates drives, the primary none: drives= must list the same drives on both replicas"
                                                 : "the primary replicates drives, this backup none: drives= must list the same drives on both replicas");
        _syncDisks = mine;
        TakeDiskChunk(begin);
    }

    /// <summary>The connection, waiting up to timeout for one to be set (a link being established); null if none.</summary>
    private SyncConnection? WaitForConnection(TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        SyncConnection? c;
        while ((c = _connection) is null || c.IsClosed)
        {
            if (Environment.TickCount64 >= deadline || _disposing) return c;
            Thread.Sleep(10);
        }
        return c;
    }

    /// <summary>The SyncBegin a superseded sync kept for a later one, if it came on this connection.</summary>
    private SyncBegin? TakeLaterBegin(SyncConnection connection)
    {
        var (on, begin) = _laterBegin;
        _laterBegin = default;
        return ReferenceEquals(on, connection) ? begin : null;
    }

    private SyncBegin ReadBegin(SyncConnection connection, TimeSpan timeout, SyncStats stats)
    {
        var frame = connection.Read(timeout);
        Expect(frame, FrameType.SyncBegin);
        stats.Wire.Control += WireSize(frame);
        try { return SyncBegin.Parser.ParseFrom(frame.Header); }
        catch (InvalidProtocolBufferException e) { throw new SyncProtocolException($"malformed SyncBegin: {e.Message}"); }
    }

    private void Abort(SyncConnection? connection, SyncRequest request, SyncStats stats, Exception error)
    {
        stats.Outcome = SyncOutcome.Aborted;
        stats.Error = error.Message;
        if (error is SyncSupersededException) connection = null;   // nothing sent, the link stays (see its throw)
        if (connection is not null && !connection.IsClosed && error is not SyncConnectionException)
        {
            try { stats.Wire.Control += connection.Send(_controlBody.Set(FrameType.SyncAbort, new SyncAbort { Epoch = request.Epoch, Reason = error.Message })); }
            catch (Exception) { /* the peer is gone too */ }
        }
        if (connection is not null)
        {
            connection.Dispose();
            Interlocked.CompareExchange(ref _connection, null, connection);
        }
        // The guest resumed early with its dirt cleared: the union of this sync must be covered by the next one.
        if (_resumedEarly) _markAllAtNextStop = true;
        _pendingSave.WaitQuietly(_options.Timeout);   // never start the VM under a device save
        if (_vmStopped)
        {
            try { _main.Invoke(_vm.Start); }
            catch (Exception e) { _log($"sync e{request.Epoch}: vm_start after the abort failed: {e.Message}"); }
        }
        _log(Role == SyncRole.Primary
            ? $"SYNC e{request.Epoch} ABORTED on the primary: {error.Message}. The backup is lost: the VM resumes UNPROTECTED; " +
              "output of this epoch stays held until a backup acks a sync or a ROLE entry says this primary runs alone."
            : $"SYNC e{request.Epoch} ABORTED on the backup: {error.Message}. Staged state discarded; the previous state is kept unchanged.");
    }

    private void ThreadLoop()
    {
        foreach (var (request, done) in _jobs.GetConsumingEnumerable())
        {
            try { done.SetResult(Run(request)); }
            catch (Exception e) { done.SetException(e); }
        }
    }

    // ---------------------------------------------------------------- steps shared by both roles

    /// <summary>Main thread: stop, cut the output epoch, harvest dirt (and on the primary save the device state).</summary>
    private void StopVm(SyncRequest request, SyncStats stats)
    {
        long start = Stopwatch.GetTimestamp();
        OnMain(stats, () =>
        {
            _vm.Stop();
            _vmStopped = true;
            _guard?.CutEpoch(request.Epoch);
            if (request.FullSync || _markAllAtNextStop) _vm.DirtyMarkAll();
            _markAllAtNextStop = false;
            _vm.DirtySync();
            TakeDiskDirt(request.FullSync);
        });
        stats.Pause.Stop = Microseconds(start);
        // The device state at the cut: the primary always needs its own, a backup comparing sections its own too.
        // Saved on the main thread while this thread goes on with the bitmaps and hashes.
        if (Role == SyncRole.Primary) _pendingSave.Post(_savePrimary);
        else if (_syncDeviceDelta) _pendingSave.Post(_saveOwn);
        Hook(SyncStep.Stopped);
    }

    /// <summary>Main thread, VM stopped: this side's device state at the cut, and where its sections start.</summary>
    private void SaveDevices(ByteBuffer into)
    {
        into.Clear();
        _deviceSections.Clear();
        _vm.SaveDeviceState(into, _deviceSections);
    }

    /// <summary>Waits for the save posted at the stop (if not waited for yet): the guest may not run before it is
    /// over, and its bytes are read after it. The wait counts in the device state pause, the save itself in DeviceSave.</summary>
    private void AwaitDeviceSave(SyncStats stats)
    {
        if (!_pendingSave.Pending) return;
        long t = Stopwatch.GetTimestamp();
        stats.Pause.DeviceSave = _pendingSave.Wait(_options.Timeout);
        stats.Pause.DeviceState += Microseconds(t);
        if (Role == SyncRole.Primary) stats.DeviceStateSavedBytes = (ulong)_deviceState.Count;
    }

    /// <summary>Copies the blocks' dirty bitmaps into one global bitmap (padding bits cleared) and seeds the union.</summary>
    private ulong GatherLocalBitmap()
    {
        var layout = _layout!;
        ulong words = layout.TotalWords;
        ulong* local = _local.Ensure(words);
        if (_syncCheckpoint && Role == SyncRole.Backup && !_syncOwnDirt)
        {
            // A checkpoint backup's VM did not run since its last completed sync: what its bitmap holds (pages the
            // last apply wrote) is the primary's. (After a switch into checkpointing whose sync aborted, its VM had
            // run: then its dirt joins the union, SyncRequest.BackupOwnDirt.)
            new Span<ulong>(local, checked((int)words)).Clear();
            new Span<ulong>(_union.Ensure(words), checked((int)words)).Clear();
            return 0;
        }
        for (int b = 0; b < layout.BlockCount; b++)
        {
            var block = layout.Block(b);
            ulong* dest = local + layout.WordBase(b);
            Buffer.MemoryCopy(block.Dirty, dest, block.Words * 8, block.Words * 8);
            dest[block.Words - 1] &= layout.ValidMask(layout.WordBase(b) + block.Words - 1);
        }
        Buffer.MemoryCopy(local, _union.Ensure(words), words * 8, words * 8);
        return PopCount(local, words);
    }

    private int SendBitmap(SyncConnection connection, SyncRequest request, ulong setBits, SyncStats stats)
    {
        _bitmapBody.Set(request.Epoch, request.LogIndex, _layout!, _local.Pointer, setBits);
        _bitmapBody.SetSendAll(_syncCheckpoint);
        stats.LocalBitmapEncoding = _bitmapBody.Encoding;
        stats.LocalBitmapBytes = _bitmapBody.TailLength;
        int n = connection.Send(_bitmapBody);
        stats.Wire.Bitmaps += n;
        return n;
    }

    /// <summary>Receives the peer's bitmap and ORs it into the union; returns the union's page count.</summary>
    private ulong ReceiveBitmap(SyncConnection connection, SyncRequest request, SyncStats stats)
    {
        var layout = _layout!;
        var frame = connection.Read(_options.Timeout);
        Expect(frame, FrameType.SyncBitmap);
        stats.Wire.Bitmaps += WireSize(frame);
        var header = _headers.Bitmap(frame.Header);
        if (header.Protocol != SyncProtocol.Version)
            throw new SyncProtocolException($"the peer speaks sync protocol {header.Protocol}{(header.Protocol == 0 ? " (an older Plover, before sub-blocks)" : "")}, " +
                                            $"this node {SyncProtocol.Version}: run the same Plover build on both replicas");
        if (header.Kind != BitmapKind.BitmapDirty)
            throw new SyncProtocolException($"expected the peer's dirty bitmap, got a {header.Kind} bitmap");
        if (header.Epoch != request.Epoch || header.LogIndex != request.LogIndex)
            throw new SyncProtocolException($"peer is at sync e{header.Epoch} (log index {header.LogIndex}), we are at e{request.Epoch} (log index {request.LogIndex})");
        if (header.TotalWords != layout.TotalWords || header.LayoutHash != layout.Hash)
            throw new SyncProtocolException($"peer's RAM layout differs ({header.TotalWords} bitmap words, layout {header.LayoutHash:x16}; ours {layout.TotalWords}, {layout.Hash:x16})");
        if (header.SendAll != _syncCheckpoint)
            throw new SyncProtocolException($"peer runs this sync with checkpoint={header.SendAll}, we with {_syncCheckpoint} (sync.mode must be the same on both replicas)");
        ulong* union = _union.Pointer;
        if (!BitmapCodec.TryDecodeOr(frame.Tail, header.Encoding, union, layout.TotalWords, out ulong bits, out string? error))
            throw new SyncProtocolException($"bad bitmap from the peer: {error}");
        if (bits != header.SetBits) throw new SyncProtocolException($"peer's bitmap has {bits} bits set, it claims {header.SetBits}");
        stats.RemoteBitmapEncoding = header.Encoding;
        stats.RemoteBitmapBytes = frame.Tail.Length;
        stats.RemoteDirtyPages = bits;
        for (int b = 0; b < layout.BlockCount; b++)
        {
            ulong last = layout.WordBase(b) + layout.Block(b).Words - 1;
            union[last] &= layout.ValidMask(last);
        }
        return PopCount(union, layout.TotalWords);
    }

    /// <summary>Hashes every union page, block by block, straight from guest RAM (or, after an early resume, from the
    /// snapshot, which holds them in the same order); returns hashes written.</summary>
    private ulong HashUnion(ulong unionPages)
    {
        var layout = _layout!;
        ulong* hashes = _localHashes.Ensure(Math.Max(unionPages, 1));
        ulong k = 0;
        if (_resumedEarly)
            k = (ulong)_hasher.HashPages(_snapshot.Data, _snapshot.Pages, _snapshot.AllPages, hashes);
        else
            for (int b = 0; b < layout.BlockCount; b++)
            {
                var block = layout.Block(b);
                k += (ulong)_hasher.HashPages(block.Host, block.Pages, _union.Pointer + layout.WordBase(b), hashes + k);
            }
        if (k != unionPages) throw new InvalidOperationException($"hashed {k} pages, the union has {unionPages}");
        Hook(SyncStep.Hashed);
        return k;
    }

    private void Hook(SyncStep step) => _options.StepHook?.Invoke(Role, step);

    /// <summary>A page's root: the CityHash64 of its sub-blocks' full CityHash64s (count of them, little-endian, in
    /// address order). The primary sends it with each page's sub-blocks; a backup that received shortened sub-block
    /// hashes recomputes it from its own sub-block hashes and those of the sub-blocks it staged, and a mismatch means
    /// a differing sub-block was taken for equal.</summary>
    internal static ulong SubBlockRoot(ulong* hashes, int count)
    {
        if (BitConverter.IsLittleEndian) return CityHash.Hash64((byte*)hashes, (nuint)(count * 8));
        Span<ulong> le = stackalloc ulong[count];
        for (int i = 0; i < count; i++) le[i] = System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(hashes[i]);
        fixed (ulong* p = le) return CityHash.Hash64((byte*)p, (nuint)(count * 8));
    }

    /// <summary>Decodes a list (a DIVERGENT or REPAIR bitmap: bit k = the k-th of items) into buffer, which it checks
    /// against the count the header claims and for bits past items; returns the words.</summary>
    private static ulong* DecodeList(NativeBuffer<ulong> buffer, in Frame frame, SyncBitmap header, ulong items, string what)
    {
        ulong words = (items + 63) / 64;
        ulong* marks = buffer.Ensure(Math.Max(words, 1));
        buffer.Clear(words);
        if (!BitmapCodec.TryDecodeOr(frame.Tail, header.Encoding, marks, words, out ulong bits, out string? error))
            throw new SyncProtocolException($"bad {what}: {error}");
        if (bits != header.SetBits) throw new SyncProtocolException($"the {what} has {bits} bits set, it claims {header.SetBits}");
        if (items % 64 != 0 && (marks[words - 1] >> (int)(items % 64)) != 0)
            throw new SyncProtocolException($"the {what} names pages past the {items} it covers");
        return marks;
    }

    private static string ModeName(bool checkpoint) => checkpoint ? "checkpoint" : "replicate";

    private Action<SyncRequest>? _atSyncPoint;

    /// <summary>
    /// Runs action once, on the engine thread, at the next sync point: the VM stopped in the state both replicas
    /// now share (primary: after the backup's ack, before resuming; backup: after the apply, before resuming).
    /// For checks (a full-RAM hash on both sides); the pause grows by however long it takes.
    /// </summary>
    public void AtNextSyncPoint(Action<SyncRequest> action) => Volatile.Write(ref _atSyncPoint, action);

    /// <summary>Runs a sync-point action the sync took from <see cref="AtNextSyncPoint"/> (none: nothing to do).</summary>
    private void RunSyncPointAction(SyncRequest request, Action<SyncRequest>? action)
    {
        if (action is null) return;
        try { action(request); }
        catch (Exception e) { _log($"sync e{request.Epoch}: sync-point action failed: {e.Message}"); }
    }

    private static void Expect(in Frame frame, FrameType type)
    {
        if (frame.Type == type) return;
        if (frame.Type == FrameType.SyncAbort)
        {
            string reason;
            try { reason = SyncAbort.Parser.ParseFrom(frame.Header).Reason; }
            catch (InvalidProtocolBufferException) { reason = "(unreadable reason)"; }
            throw new SyncProtocolException($"the peer aborted the sync: {reason}");
        }
        throw new SyncProtocolException($"expected a {type} frame, got {frame.Type}");
    }

    private static int WireSize(in Frame frame) => FrameFormat.HeaderSize + frame.Body.Length + FrameFormat.MacSize;

    private static ulong PopCount(ulong* words, ulong count)
    {
        ulong n = 0;
        for (ulong w = 0; w < count; w++) n += (ulong)BitOperations.PopCount(words[w]);
        return n;
    }

    private static double Microseconds(long since) => Stopwatch.GetElapsedTime(since).TotalMicroseconds;

    /// <summary>Runs action on the host's main thread and waits for it; the wait before it started is this sync's
    /// <see cref="SyncPause.MainWait"/> (the hand-off, apart from the work).</summary>
    private void OnMain(SyncStats stats, Action action)
    {
        long posted = Stopwatch.GetTimestamp(), entered = 0;
        _main.Invoke(() =>
        {
            entered = Stopwatch.GetTimestamp();
            action();
        });
        stats.Pause.MainWait += Stopwatch.GetElapsedTime(posted, entered).TotalMicroseconds;
    }

    private volatile bool _disposing;

    public void Dispose()
    {
        _disposing = true;
        _jobs.CompleteAdding();
        _connection?.Dispose();   // a sync or a join waiting on the peer gives up at once
        _thread.Join();
        _connection?.Dispose();
        _hasher.Dispose();
        _workers.Dispose();
        _snapshot.Dispose();
        _stagingRegion.Dispose();   // before the buffer it registers
        _pageHashes.Dispose(); _putGather.Dispose();
        _disks?.Dispose(); _diskStaging.Dispose();
        _local.Dispose(); _union.Dispose(); _localHashes.Dispose(); _remoteHashes.Dispose(); _pageList.Dispose(); _staging.Dispose();
        _divergentBits.Dispose(); _localSub.Dispose(); _remoteSub.Dispose(); _masks.Dispose(); _roots.Dispose(); _expectedHashes.Dispose(); _failed.Dispose(); _repairStaging.Dispose(); _repairBits.Dispose(); _applyOffsets.Dispose(); _differences.Dispose(); _divergentPages.Dispose();
        Divergence.Dispose();
        _deviceState.Dispose();
        _pendingSave.Dispose();
    }
}
