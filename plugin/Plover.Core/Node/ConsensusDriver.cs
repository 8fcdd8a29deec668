using System.Collections.Concurrent;
using System.Diagnostics;
using Plover.Consensus;
using Plover.Transport;
using Plover.Platform;

namespace Plover.Node;

/// <summary>
/// Role, ballot (term = Ballot.Round) and known leader (0 = unknown) of a node as last reported by its core, and
/// the last fence (null if this node was never deposed as leader).
/// </summary>
public sealed record ConsensusStatus(ConsensusRole Role, Ballot Ballot, int LeaderId, Fence? LastFence);

/// <summary>
/// Runs a <see cref="ConsensusNode"/> (the pure Multi-Paxos core) on a dedicated thread over an
/// <see cref="ITransport"/> with a real monotonic clock.
///
/// The thread loops: step every message received (checked on the transport's reader threads, which queue the frames'
/// bytes; decoded here, into storage this thread reuses, and payloads into the log's recycled slabs), propose
/// everything queued by <see cref="Propose"/> (so proposals that arrived while a round was in flight go out as
/// one batch), tick the core once per elapsed tick (1 ms by default), and when the core has output send its
/// messages at once (one flush per peer, normally a direct write to the socket from this thread), deliver
/// committed entries in order to <see cref="Committed"/>, report role, ballot and fencing changes, and advance.
/// Between iterations it sleeps until the next tick with microsecond precision, or until a message or proposal
/// wakes it.
///
/// With <see cref="ConsensusDriverOptions.InlineProcessing"/> (off by default) a transport reader thread that
/// delivers a message, or a thread that proposes, runs that same pass itself when the core is free (under the
/// core lock, so the core still sees one caller at a time): a round trip then costs no thread hand-offs beyond
/// the network's. The consensus thread keeps the clock.
/// Callbacks therefore run on whichever thread holds the core: never concurrently, always in log order; they
/// must be quick and must not call back into the driver's Propose (hand work to another thread).
///
/// In steady state nothing here allocates per message or entry (tests-managed/Allocation): frames and proposals wait
/// in byte queues, messages are values whose entries borrow reused buffers, payloads live in slabs reused after
/// compaction, and strings are built only when something is logged.
/// </summary>
public sealed class ConsensusDriver : IDisposable
{
    private readonly ConsensusNode _node;
    private readonly ITransport _transport;
    private readonly ConsensusDriverOptions _options;
    private readonly RecordQueue<(int Peer, long At)> _incoming = new();   // frame bodies, tagged with the peer (and, tracing, when)
    private readonly ConcurrentQueue<(bool Install, long Index)> _compactions = new();
    private readonly RecordQueue<(EntryType Type, long At)> _proposals;
    private readonly CommitHops? _hops;                    // options.TraceHopsEvery > 0
    private long _hopsAckSentThrough, _hopsAckReceivedThrough;
    private readonly ConsensusWakeup _wakeup = new();
    private readonly ConsensusFrameEncoder _encoder = new();
    private readonly PayloadArena _payloads;               // the log's payloads (consensus thread)
    private readonly ConsensusFrameDecoder _decoder;       // consensus thread
    private readonly int[] _peerIds;
    private readonly long _tickStopwatchTicks;
    private readonly Thread _thread;
    [ThreadStatic] private static ConsensusFrameDecoder? t_validator;   // a reader thread's checks

    private readonly object _coreLock = new();
    private long _nextTick;
    private volatile bool _stop;
    private volatile ConsensusStatus _status;
    private volatile Exception? _failure;
    private long _commitIndex;
    private long _lastIndex;
    private long _messagesSent, _messagesDropped, _messagesReceived, _proposalsRefused, _proposalsDropped;
    private long _maxTickLatenessTicks;
    private volatile bool _fresh;
    private volatile bool _recovering;
    private long[] _silenceTicks = [];
    private bool _canCampaign = true;
    private volatile bool _campaignChanged;

    public ConsensusDriver(ConsensusDriverOptions options, ITransport transport)
    {
        if (transport.SelfId != options.Consensus.SelfId)
            throw new ArgumentException($"transport is node {transport.SelfId}, consensus is node {options.Consensus.SelfId}");
        if (options.TickMs <= 0) throw new ArgumentException("TickMs must be positive");
        _options = options;
        _transport = transport;
        _node = new ConsensusNode(options.Consensus, options.Seed is { } s ? new Random(s) : new Random(), options.Restored);
        _fresh = options.Restored is null;
        _recovering = _node.IsRecovering;
        _silenceTicks = new long[options.Consensus.Members.Max(m => m.Id) + 1];
        _peerIds = options.Consensus.Members.Select(m => m.Id).Where(id => id != options.Consensus.SelfId).ToArray();
        _proposals = new RecordQueue<(EntryType, long)>(options.MaxQueuedProposalBytes);
        if (options.TraceHopsEvery > 0) _hops = new CommitHops(options.TraceHopsEvery);
        _payloads = new PayloadArena(() => _node.FirstIndex);
        _decoder = new ConsensusFrameDecoder(_payloads);
        _tickStopwatchTicks = Math.Max(1, (long)(Stopwatch.Frequency * options.TickMs / 1000.0));
        _status = new ConsensusStatus(_node.Role, _node.Ballot, _node.LeaderId, null);
        _thread = ThreadScheduling.Start(Run, $"plover-consensus-{SelfId}", ThreadScheduling.Priority.Realtime, options.Log);
    }

    public int SelfId => _options.Consensus.SelfId;

    /// <summary>Each committed entry, in log order, exactly once (under the core lock; see the class summary).</summary>
    public Action<LogEntry>? Committed { get; set; }
    /// <summary>Role, ballot or leader changed (under the core lock).</summary>
    public Action<ConsensusStatus>? StateChanged { get; set; }
    /// <summary>This node stopped leading: it must stop releasing output for good (under the core lock).</summary>
    public Action<Fence>? Fenced { get; set; }
    /// <summary>This follower needs a VM snapshot covering the index (under the core lock); answer with <see cref="InstallSnapshot"/>.</summary>
    public Action<SnapshotNeeded>? SnapshotNeeded { get; set; }

    public ConsensusStatus Status => _status;
    public ConsensusRole Role => _status.Role;
    public bool IsLeader => _status.Role == ConsensusRole.Leader;
    public Ballot Ballot => _status.Ballot;
    public long Term => _status.Ballot.Round;
    public int LeaderId => _status.LeaderId;
    /// <summary>The last fence reported (null if this node was never deposed).</summary>
    public Fence? LastFence => _status.LastFence;
    /// <summary>Set if the consensus thread died of a bug (logged as FATAL); the node then takes no further part.</summary>
    public Exception? Failure => _failure;
    public long CommitIndex => Volatile.Read(ref _commitIndex);
    /// <summary>True while this node started a fresh cluster and nothing is committed in it yet (still ballot 1):
    /// what the start-up probe of a starting or restarting peer asks.</summary>
    public bool IsFresh => _fresh;
    /// <summary>True while this node, started without consensus memory, rebuilds it from the others: it does not vote yet.</summary>
    public bool IsRecovering => _recovering;
    /// <summary>The consensus role for status reports: "recovering", "follower", "precandidate", "candidate" or "leader".</summary>
    public string RoleName => _recovering ? "recovering" : Role.ToString().ToLowerInvariant();
    /// <summary>Whether this node may start elections (a replica without a usable VM must not).</summary>
    public bool CanCampaign => Volatile.Read(ref _canCampaign);

    /// <summary>Allows or forbids this node to start elections (any thread; applied on the consensus thread).</summary>
    public void SetCanCampaign(bool value)
    {
        Volatile.Write(ref _canCampaign, value);
        _campaignChanged = true;
        _wakeup.Wake();
    }

    /// <summary>While leading: milliseconds since peer last answered (-1 when not leading). Updated every pass.</summary>
    public double SilenceMs(int peer) =>
        (uint)peer < (uint)_silenceTicks.Length ? Volatile.Read(ref _silenceTicks[peer]) * _options.TickMs : -1;

    /// <summary>Consensus frames from the transport, for a dispatcher that registered before this driver existed.</summary>
    public void OnConsensusFrame(int peer, in Frame frame) => HandleFrame(peer, frame);
    public long LastIndex => Volatile.Read(ref _lastIndex);
    public long MessagesSent => Volatile.Read(ref _messagesSent);
    /// <summary>Messages the core wanted sent to a peer that was not connected.</summary>
    public long MessagesDropped => Volatile.Read(ref _messagesDropped);
    public long MessagesReceived => Volatile.Read(ref _messagesReceived);
    /// <summary>Proposals refused by <see cref="Propose"/> (not leader, or queue full).</summary>
    public long ProposalsRefused => Volatile.Read(ref _proposalsRefused);
    /// <summary>Proposals queued while leader but dropped because leadership was lost before the consensus thread took them.</summary>
    public long ProposalsDropped => Volatile.Read(ref _proposalsDropped);

    /// <summary>
    /// Longest delay seen between a tick falling due and this thread running it, in microseconds: how long the
    /// consensus thread was kept from running (descheduled, GC, a slow callback). Elections follow when it
    /// approaches the election timeout.
    /// </summary>
    public double MaxTickLatenessUs => Volatile.Read(ref _maxTickLatenessTicks) * 1e6 / Stopwatch.Frequency;

    /// <summary>Receives Consensus frames from the transport (register it in the FrameDispatcher).</summary>
    public void Attach(FrameDispatcher dispatcher) => dispatcher.Register(FrameType.Consensus, HandleFrame);

    public void Start()
    {
        if (_recovering)
            _options.Log($"consensus {SelfId}: started without consensus memory: recovering (no vote until " +
                         "enough other members answered with what they hold)");
        _thread.Start();
    }

    /// <summary>
    /// Queues an entry for the log (payload copied). Any thread. Returns false if this node is not the leader or
    /// the queue is full; a true return is no promise of commit (watch <see cref="Committed"/>).
    /// </summary>
    public bool Propose(EntryType type, ReadOnlySpan<byte> payload)
    {
        if (!IsLeader || !_proposals.TryAdd((type, _hops is null ? 0 : Stopwatch.GetTimestamp()), payload))
        {
            Interlocked.Increment(ref _proposalsRefused);
            return false;
        }
        if (_options.InlineProcessing) ProcessInline();
        else _wakeup.Wake();
        return true;
    }

    /// <summary>Drops log entries up to index once a completed syncvm covers them (any thread; applied on the consensus thread).</summary>
    public void Compact(long index)
    {
        _compactions.Enqueue((false, index));
        _wakeup.Wake();
    }

    /// <summary>A VM snapshot covering index was installed (after <see cref="SnapshotNeeded"/>).</summary>
    public void InstallSnapshot(long index)
    {
        _compactions.Enqueue((true, index));
        _wakeup.Wake();
    }

    private void HandleFrame(int peer, in Frame frame)
    {
        // Checked here, so that a bad frame closes its connection (InvalidDataException); decoded on the consensus thread.
        (t_validator ??= new ConsensusFrameDecoder()).Validate(SelfId, peer, frame.Header, frame.Tail.Length);
        _incoming.TryAdd((peer, _hops is null ? 0 : Stopwatch.GetTimestamp()), frame.Body);
        if (_options.InlineProcessing) ProcessInline();
        else _wakeup.Wake();
    }

    // ---------------------------------------------------------------- the consensus thread

    private void Run()
    {
        ConsensusWakeup.UsePreciseTimers();
        _nextTick = Stopwatch.GetTimestamp() + _tickStopwatchTicks;
        while (!_stop && _failure is null)
        {
            bool worked;
            long passStart = Stopwatch.GetTimestamp();
            lock (_coreLock) worked = ProcessOnce(tick: true);
            long pass = Stopwatch.GetTimestamp() - passStart;
            if (pass > _longestPassTicks) _longestPassTicks = pass;
            if (worked) continue;

            _wakeup.PrepareToSleep();
            if (!_incoming.IsEmpty || !_proposals.IsEmpty || !_compactions.IsEmpty || _stop)
            {
                _wakeup.CancelSleep();
                continue;
            }
            long waitTicks = _nextTick - Stopwatch.GetTimestamp();
            if (waitTicks > 0)
            {
                _wakeup.Sleep(waitTicks * 1_000_000_000 / Stopwatch.Frequency);
                long over = Stopwatch.GetTimestamp() - _nextTick;   // > 0: woke after the deadline
                if (over > _longestOversleepTicks) _longestOversleepTicks = over;
            }
            else _wakeup.CancelSleep();
        }
    }

    /// <summary>
    /// Runs the core on the calling (transport or proposing) thread if nobody else is: the message or proposal
    /// just queued is handled, and the core's output sent, without waking the consensus thread. One pass only:
    /// what arrived meanwhile goes to the consensus thread, so that a stream of messages cannot keep a reader in
    /// the core while the consensus thread, which keeps the clock, waits for it (ticks ran 250 ms late that way).
    /// </summary>
    private void ProcessInline()
    {
        if (Monitor.IsEntered(_coreLock))
        {
            _wakeup.Wake();   // called from a callback: the pass in progress picks the new work up
            return;
        }
        if (Monitor.TryEnter(_coreLock))
        {
            try
            {
                if (!_stop && _failure is null) ProcessOnce(tick: false);
            }
            finally
            {
                Monitor.Exit(_coreLock);
            }
            if (_incoming.IsEmpty && _proposals.IsEmpty) return;
        }
        _wakeup.Wake();   // costs a syscall only if the consensus thread sleeps
    }

    /// <summary>One pass over the core (caller holds _coreLock). True if it produced output.</summary>
    private bool ProcessOnce(bool tick)
    {
        try
        {
            StepIncoming();
            TakeProposals();
            ApplyCompactions();
            if (_campaignChanged)
            {
                _campaignChanged = false;
                bool allowed = Volatile.Read(ref _canCampaign) && _options.Consensus.Self.CanLead;
                if (_node.CanCampaign != allowed) _node.CanCampaign = allowed;
            }

            if (tick)
            {
                long now = Stopwatch.GetTimestamp();
                if (now >= _nextTick)
                {
                    // A late thread (descheduled, a stopped process) counts at most one heartbeat interval of the
                    // time it lost: the peers' messages of that time wait unprocessed in _incoming, so ticking
                    // through it all at once would read as their silence (a leader stepping down for "lost quorum",
                    // a follower campaigning against a leader whose heartbeats it has not read yet).
                    long due = (now - _nextTick) / _tickStopwatchTicks + 1;
                    if (now - _nextTick > _maxTickLatenessTicks) Volatile.Write(ref _maxTickLatenessTicks, now - _nextTick);
                    ReportLateness(now - _nextTick, now);
                    _node.Tick((int)Math.Min(due, Math.Max(1, _options.Consensus.HeartbeatTicks)));
                    _nextTick += due * _tickStopwatchTicks;
                }
            }

            if (tick)
                foreach (int peer in _peerIds) Volatile.Write(ref _silenceTicks[peer], _node.TicksSinceHeard(peer));
            bool worked = false;
            while (_node.HasReady)
            {
                ProcessReady();
                worked = true;
            }
            return worked;
        }
        catch (Exception e)
        {
            // A bug in the core or a callback: the node can no longer take part safely. Say so loudly and stop;
            // not rethrown, which would take the whole process (QEMU) down with it.
            _options.Log($"consensus {SelfId}: FATAL: consensus failed: {e}");
            _failure = e;
            _status = _status with { Role = ConsensusRole.Follower, LeaderId = 0 };
            _stop = true;
            return false;
        }
    }

    private long _longestPassTicks, _longestOversleepTicks;   // since the last lateness report
    private long _lastLatenessReport;
    private TimeSpan _gcPauseAtReport;
    private int _gcsAtReport;

    /// <summary>A tick that ran later than half the shortest election timeout can cost an election: say so (at most
    /// once a second), with the garbage collections since the last report, to tell a GC pause from starvation.</summary>
    private void ReportLateness(long lateTicks, long now)
    {
        double lateMs = lateTicks * 1000.0 / Stopwatch.Frequency;
        if (lateMs < _options.TickMs * _options.Consensus.ElectionMinTicks / 2.0) return;
        if (now - _lastLatenessReport < Stopwatch.Frequency) return;
        _lastLatenessReport = now;
        int gcs = GC.CollectionCount(0);
        TimeSpan pause = GC.GetTotalPauseDuration();
        _options.Log($"consensus {SelfId}: the consensus thread ran {lateMs:F1} ms late (election timeout from " +
                     $"{_options.TickMs * _options.Consensus.ElectionMinTicks:F0} ms); since the last report: longest " +
                     $"pass {_longestPassTicks * 1000.0 / Stopwatch.Frequency:F1} ms, longest oversleep " +
                     $"{_longestOversleepTicks * 1000.0 / Stopwatch.Frequency:F1} ms, {gcs - _gcsAtReport} GCs " +
                     $"({(pause - _gcPauseAtReport).TotalMilliseconds:F1} ms paused)");
        _longestPassTicks = _longestOversleepTicks = 0;
        _gcsAtReport = gcs;
        _gcPauseAtReport = pause;
    }

    /// <summary>Decodes and steps every frame the reader threads queued (they checked them already).</summary>
    private void StepIncoming()
    {
        var (data, items) = _incoming.TakeAll();
        int at = 0;
        foreach (var ((peer, receivedAt), length) in items)
        {
            var body = data.Data.Slice(at, length);
            at += length;
            try
            {
                FrameBody.TrySplit(body, out var header, out var tail, out _);
                var m = _decoder.Decode(SelfId, peer, header, tail);
                if (_hops is not null) TraceReceived(m, receivedAt, CommitHops.Stage.AcceptReceived, CommitHops.Stage.AcceptedReceived);
                _node.Step(m);
                if (_hops is not null) TraceReceived(m, Stopwatch.GetTimestamp(), CommitHops.Stage.AcceptStepped, CommitHops.Stage.AcceptedStepped);
                _messagesReceived++;
            }
            catch (InvalidDataException e)
            {
                // Cannot happen (the reader thread ran the same checks); a lost message is repaired like any other.
                _options.Log($"consensus {SelfId}: dropped a message from node {peer}: {e.Message}");
            }
        }
        _incoming.Recycle(data, items);
    }

    private void TakeProposals()
    {
        var (data, items) = _proposals.TakeAll();
        int at = 0;
        foreach (var ((type, proposedAt), length) in items)
        {
            var payload = data.Data.Slice(at, length);
            at += length;
            // Copied into the log's slabs only when it enters the log, at the index it will have.
            if (_node.IsLeader && _node.TryProposeStored(type, _payloads.Copy(payload, _node.LastIndex + 1), out long index) && _hops is not null)
            {
                _hops.Record(index, CommitHops.Stage.Proposed, proposedAt);
                _hops.Record(index, CommitHops.Stage.Taken, Stopwatch.GetTimestamp());
            }
            else if (!_node.IsLeader) _proposalsDropped++;
        }
        _proposals.Recycle(data, items);
    }

    private void ApplyCompactions()
    {
        while (_compactions.TryDequeue(out var c))
        {
            try
            {
                if (c.Install) _node.InstallSnapshot(c.Index);
                else _node.Compact(c.Index);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                _options.Log($"consensus {SelfId}: {(c.Install ? "snapshot install" : "compaction")} at {c.Index} refused: {e.Message}");
            }
        }
    }

    private void ProcessReady()
    {
        var ready = _node.GetReady();
        // A leader's commit callback is what its client waits for: it runs before this Ready's messages are written
        // (commit notices and heartbeats, or later proposals; measured: writing them first cost the callback 20 us
        // of a 94 us commit). A follower writes first: its acknowledgement is what the leader waits for.
        bool callbackFirst = ready.CommittedEntries.Count > 0 && _node.IsLeader;
        if (!callbackFirst) SendMessages(ready);

        if (ready.Change is { } change)
        {
            _status = new ConsensusStatus(change.Role, change.Ballot, change.LeaderId, _status.LastFence);
            _options.Log($"consensus {SelfId}: {change.Role.ToString().ToLowerInvariant()} in ballot {change.Ballot}, leader {(change.LeaderId == 0 ? "unknown" : change.LeaderId)}");
        }
        if (ready.Fenced is { } fence)
        {
            _status = _status with { LastFence = fence };
            _options.Log($"consensus {SelfId}: fenced: no longer leader of ballot {fence.Ballot} ({fence.Reason})");
            Fenced?.Invoke(fence);
        }
        if (ready.Recovered is { } recovered)
        {
            _recovering = false;
            _options.Log($"consensus {SelfId}: recovered: ballot {_node.Ballot}, log [{_node.FirstIndex}, {_node.LastIndex}], " +
                         $"commit {_node.CommitIndex}{(recovered > 0 ? $"; entries through {recovered} are covered by a snapshot" : "")}");
        }
        if (ready.Change is not null) StateChanged?.Invoke(_status);

        var committed = Committed;
        foreach (var e in ready.CommittedEntries)
        {
            _hops?.Record(e.Index, CommitHops.Stage.Committed, Stopwatch.GetTimestamp());
            committed?.Invoke(e);
        }
        if (ready.CommittedEntries.Count > 0) Volatile.Write(ref _commitIndex, ready.CommittedEntries[^1].Index);
        if (callbackFirst) SendMessages(ready);
        if (ready.Snapshot is { } snap) SnapshotNeeded?.Invoke(snap);
        _node.Advance();
        Volatile.Write(ref _commitIndex, _node.CommitIndex);
        Volatile.Write(ref _lastIndex, _node.LastIndex);
        // Fresh until something is committed: a peer still deciding how to start may then take the fresh-cluster
        // ballot too, instead of joining as a node without memory that has to recover before it votes (two such
        // nodes would wait for each other's answers while the new primary proposes its first inputs).
        if (_fresh && (_node.CommitIndex > 0 || _node.Ballot.Round > 1)) _fresh = false;
    }

    /// <summary>Hand-off timestamps of sampled entries (null unless <see cref="ConsensusDriverOptions.TraceHopsEvery"/>);
    /// read it once the node is idle or stopped.</summary>
    public CommitHops? Hops => _hops;

    private void TraceReceived(in Message m, long at, CommitHops.Stage accept, CommitHops.Stage accepted)
    {
        if (m.Type == MessageType.Accept && !m.Entries.IsEmpty)
            _hops!.RecordRange(m.Index, m.Index + m.Entries.Length - 1, accept, at);
        else if (m.Type == MessageType.Accepted && !m.Reject && m.Index > _hopsAckReceivedThrough)
        {
            _hops!.RecordRange(Math.Max(_hopsAckReceivedThrough + 1, m.Index - 1024L * _hops.Every), m.Index, accepted, at, m.From);
            if (accepted == CommitHops.Stage.AcceptedStepped) _hopsAckReceivedThrough = m.Index;
        }
    }

    private void TraceSent(List<Message> messages)
    {
        long now = Stopwatch.GetTimestamp();
        foreach (var m in messages)
        {
            if (m.Type == MessageType.Accept && !m.Entries.IsEmpty)
                _hops!.RecordRange(m.Index, m.Index + m.Entries.Length - 1, CommitHops.Stage.AcceptSent, now);
            else if (m.Type == MessageType.Accepted && !m.Reject && m.Index > _hopsAckSentThrough)
            {
                _hops!.RecordRange(Math.Max(_hopsAckSentThrough + 1, m.Index - 1024L * _hops.Every), m.Index, CommitHops.Stage.AcceptedSent, now);
                _hopsAckSentThrough = m.Index;
            }
        }
    }

    private void SendMessages(Ready ready)
    {
        if (_hops is not null) TraceSent(ready.Messages);   // handed to the transport now (a reply may beat the flush)
        foreach (var m in ready.Messages)
        {
            if (_transport.Send(m.To, _encoder.Set(m))) _messagesSent++;
            else _messagesDropped++;
        }
        if (ready.Messages.Count > 0) _transport.Flush();
    }

    /// <summary>Stops the consensus thread (idempotent). The transport is the caller's to dispose.</summary>
    public void Dispose()
    {
        if (_stop) return;
        _stop = true;
        _wakeup.Wake();
        if (_thread.IsAlive && !_thread.Join(TimeSpan.FromSeconds(2))) return;   // a stuck callback: leave the fd open
        _wakeup.Dispose();
    }
}
