namespace Plover.Consensus;

/// <summary>
/// Multi-Paxos over a fixed membership, as a pure deterministic state machine (no clock, threads, sockets or
/// randomness other than the injected Random). Inputs: <see cref="Step"/>, <see cref="Tick"/>,
/// <see cref="TryPropose"/>, <see cref="Compact"/>, <see cref="InstallSnapshot"/>. Output: <see cref="GetReady"/>
/// then <see cref="Advance"/>. Not thread-safe: one caller thread drives it.
///
/// The leader is the VM primary. A fresh cluster starts with the configured primary leading ballot
/// (1, primary) without an election. When the leader falls silent, a leader-capable follower asks for a
/// pre-vote (refused by anyone who heard the leader recently), then runs phase 1 in a higher ballot: it adopts,
/// slot by slot, the highest-ballot value among a majority of promises (so an entry committed by the old
/// primary and the witness alone is recovered from the witness), re-proposes all of them in its own ballot and
/// appends a ROLE entry. Phase 2 (Accept) doubles as heartbeat, is batched and pipelined, and carries the
/// commit index; lost messages are repaired by gap replies and by retransmission after a timeout.
///
/// A node restarted without its memory takes no part until it has rebuilt its state from the others
/// (ConsensusNode.Recovery.cs). This file holds state, public API and the acceptor side; election, leader and
/// recovery logic are in the partial files.
/// </summary>
public sealed partial class ConsensusNode
{
    private readonly ConsensusConfig _config;
    private readonly Random _random;
    private readonly ElectionTimer _timer;
    private readonly int[] _peers;
    private readonly bool _followLeaderCompaction;

    private ConsensusLog _log;
    private Ballot _promised;
    private ConsensusRole _role;
    private int _leaderId;
    private long _commit;
    private long _delivered;          // highest index handed out in a Ready
    private long _applied;            // highest index the caller acknowledged (Advance)
    private long _acceptedThrough;    // follower: log equals the current ballot's leader log up to here
    private long _now;
    private long _lastHeardLeader;
    private long _maxSeenRound;
    private bool _canCampaign;

    private Ready _pending = new();
    private Ready _spare = new();
    private Ready? _handed;
    private long _handedThrough;
    private StateChange _lastReported;

    public ConsensusNode(ConsensusConfig config, Random random, DurableState? restored = null)
    {
        config.Validate();
        _config = config;
        _random = random;
        _timer = new ElectionTimer(config.ElectionMinTicks, config.ElectionMaxTicks, random);
        _peers = config.Members.Where(m => m.Id != config.SelfId).Select(m => m.Id).ToArray();
        _followLeaderCompaction = config.FollowLeaderCompaction ?? !config.Self.CanLead;
        _canCampaign = config.Self.CanLead;

        if (restored is null)
        {
            // Fresh cluster: everyone has implicitly promised ballot 1 of the configured primary, which
            // therefore needs no phase 1 (nothing can have been accepted in a lower ballot).
            _log = new ConsensusLog();
            _promised = new Ballot(1, config.InitialLeaderId);
            _leaderId = config.InitialLeaderId;
            _role = config.SelfId == config.InitialLeaderId ? ConsensusRole.Leader : ConsensusRole.Follower;
        }
        else
        {
            // A restarted node comes back as a follower: leading again needs a new, higher ballot.
            _log = restored.Log.Clone();
            _promised = restored.Promised;
            _commit = Math.Min(restored.Commit, _log.LastIndex);
            _applied = _delivered = Math.Clamp(restored.Applied, _log.FirstIndex - 1, _commit);
            // Entries of the promised ballot can only have come, contiguously, from that ballot's leader.
            _acceptedThrough = _commit;
            while (_log.TryGet(_acceptedThrough + 1, out var e) && e.Ballot == _promised) _acceptedThrough++;
            _leaderId = 0;
            _role = ConsensusRole.Follower;
        }
        _maxSeenRound = _promised.Round;
        _lastHeardLeader = 0;
        _lastReported = new StateChange(_role, _promised, _leaderId);
        if (_role == ConsensusRole.Leader) InitLeaderState(_log.FirstIndex);
        if (restored is { MemoryLost: true }) StartRecovery();
    }

    public int Id => _config.SelfId;
    public ConsensusConfig Config => _config;
    public ConsensusRole Role => _role;
    public bool IsLeader => _role == ConsensusRole.Leader;
    /// <summary>Highest ballot promised; while leader, the ballot this node leads in (its term is Ballot.Round).</summary>
    public Ballot Ballot => _promised;
    /// <summary>Known leader id, or 0 when unknown.</summary>
    public int LeaderId => _leaderId;
    public long CommitIndex => _commit;
    public long AppliedIndex => _applied;
    public long FirstIndex => _log.FirstIndex;
    public long LastIndex => _log.LastIndex;
    public long Now => _now;
    /// <summary>Leader only: ticks since follower peer last answered (-1 when not leading or unknown).</summary>
    public long TicksSinceHeard(int peer) =>
        _role == ConsensusRole.Leader && _progress.TryGetValue(peer, out var pr) ? _now - pr.LastHeardTick : -1;

    /// <summary>Read-only view of the log (for tests, status and the snapshot logic).</summary>
    public ConsensusLog Log => _log;

    /// <summary>
    /// Whether this node may start elections. Defaults to the member's CanLead; the node wiring can turn it off
    /// (for example on a node without a usable VM). Cannot be turned on for a member that cannot lead.
    /// </summary>
    public bool CanCampaign
    {
        get => _canCampaign;
        set
        {
            if (value && !_config.Self.CanLead) throw new InvalidOperationException($"node {Id} cannot lead (witness)");
            _canCampaign = value;
        }
    }

    /// <summary>Copy of the state a restarted node needs (see <see cref="DurableState"/>).</summary>
    public DurableState ExportDurableState() =>
        _recovering ? DurableState.Empty : new(_promised, _log.Clone(), _commit, _applied);

    /// <summary>One-line state summary for logs and test failures.</summary>
    public override string ToString()
    {
        var s = $"node {Id} {(_recovering ? "Recovering" : _role)} b={_promised} leader={_leaderId} log=[{_log.FirstIndex},{_log.LastIndex}] " +
                $"commit={_commit} applied={_applied} acceptedThrough={_acceptedThrough}";
        foreach (var (id, pr) in _progress) s += $" | {id}: match={pr.Match} next={pr.Next}";
        return s;
    }

    // ---------------------------------------------------------------- inputs

    /// <summary>Advances the logical clock by one tick (heartbeats, election and retransmit timers).</summary>
    public void Tick()
    {
        _now++;
        if (_recovering) TickRecovery();
        else if (_role == ConsensusRole.Leader) TickLeader();
        else if (_timer.Tick()) OnElectionTimeout();
    }

    public void Tick(int ticks)
    {
        for (int i = 0; i < ticks; i++) Tick();
    }

    /// <summary>
    /// Appends a new entry (payload copied once) if this node is the leader; returns false otherwise.
    /// The entry is sent at the next <see cref="GetReady"/>, so proposals made together travel in one batch.
    /// </summary>
    public bool TryPropose(EntryType type, ReadOnlySpan<byte> payload, out long index)
    {
        if (_role != ConsensusRole.Leader) { index = 0; return false; }
        index = _log.LastIndex + 1;
        _log.Set(new LogEntry(index, _promised, type, payload.ToArray()));
        return true;
    }

    /// <summary>
    /// <see cref="TryPropose(EntryType, ReadOnlySpan{byte}, out long)"/> with a payload the caller already copied for
    /// the log (the driver keeps payloads in recycled slabs): it must stay unchanged until the entry is compacted.
    /// </summary>
    public bool TryProposeStored(EntryType type, ReadOnlyMemory<byte> payload, out long index)
    {
        if (_role != ConsensusRole.Leader) { index = 0; return false; }
        index = _log.LastIndex + 1;
        _log.Set(new LogEntry(index, _promised, type, payload));
        return true;
    }

    /// <summary>
    /// Processes one message from a peer. Messages not addressed to this node or from non-members are ignored. Its
    /// entries are only read during the call (a message kept for later is detached).
    /// </summary>
    public void Step(in Message m)
    {
        if (m.To != Id || m.From == Id || !IsPeer(m.From)) return;
        // Without its memory this node takes no part (no vote, promise, acceptance or answer) until it recovered.
        if (_recovering && m.Type != MessageType.RecoveryResponse) return;
        // Requests are made in the sender's own ballot, and only leader-capable members own ballots.
        if ((m.Type is MessageType.PreVote or MessageType.Prepare or MessageType.Accept or MessageType.SnapshotRequired) &&
            (m.Ballot.NodeId != m.From || !_config.Member(m.From).CanLead)) return;
        // A pre-vote's ballot is only proposed, and a refused one must not push later ballots up (a partitioned or
        // ineligible node retrying would otherwise inflate every node's next round).
        if (m.Type is not (MessageType.PreVote or MessageType.PreVoteReply) && m.Ballot.Round > _maxSeenRound)
            _maxSeenRound = m.Ballot.Round;
        switch (m.Type)
        {
            case MessageType.PreVote: OnPreVote(in m); break;
            case MessageType.PreVoteReply: OnPreVoteReply(in m); break;
            case MessageType.Prepare: OnPrepare(in m); break;
            case MessageType.Promise: OnPromise(in m); break;
            case MessageType.Nack: OnNack(in m); break;
            case MessageType.Accept: OnAccept(in m); break;
            case MessageType.Accepted: OnAccepted(in m); break;
            case MessageType.SnapshotRequired: OnSnapshotRequired(in m); break;
            case MessageType.RecoveryRequest: OnRecoveryRequest(in m); break;
            case MessageType.RecoveryResponse: OnRecoveryResponse(in m); break;
        }
    }

    /// <summary>
    /// Drops entries at or below index: call once a completed syncvm covers them (the VM state is the snapshot).
    /// index must not exceed <see cref="AppliedIndex"/>.
    /// </summary>
    public void Compact(long index)
    {
        if (index > _applied) throw new ArgumentOutOfRangeException(nameof(index), $"cannot compact through {index}: only {_applied} applied");
        CompactLog(index);
    }

    /// <summary>
    /// The caller installed a VM snapshot that covers every entry up to index (after a SnapshotNeeded).
    /// Entries at or below index are dropped and count as committed and applied.
    /// </summary>
    public void InstallSnapshot(long index)
    {
        if (index <= _applied) return;
        if (_role == ConsensusRole.Leader) throw new InvalidOperationException("a leader cannot install a snapshot");
        if (_role != ConsensusRole.Follower) { _role = ConsensusRole.Follower; _leaderId = 0; }   // abandon the campaign
        CompactLog(index);
        _commit = Math.Max(_commit, index);
        _acceptedThrough = Math.Max(_acceptedThrough, index);
        _applied = _delivered = index;
        ReportState();
        if (_role == ConsensusRole.Follower && _leaderId != 0)
            Send(new Message { Type = MessageType.Accepted, From = Id, To = _leaderId, Ballot = _promised, Index = _acceptedThrough });
    }

    // ---------------------------------------------------------------- output

    /// <summary>True when <see cref="GetReady"/> has something.</summary>
    public bool HasReady => _handed is null && (!_pending.IsEmpty || _commit > _delivered || HasSomethingToSend());

    /// <summary>
    /// Returns everything produced since the last call: send the messages, apply the committed entries, then
    /// call <see cref="Advance"/>. Calling it again before Advance throws.
    /// </summary>
    public Ready GetReady()
    {
        if (_handed is not null) throw new InvalidOperationException("GetReady called twice without Advance");
        if (_role == ConsensusRole.Leader) SendPendingEntries();
        for (long i = _delivered + 1; i <= _commit; i++) _pending.CommittedEntries.Add(_log[i]);
        _delivered = _commit;
        _handedThrough = _delivered;
        _handed = _pending;
        _pending = _spare;
        _spare = null!;
        return _handed;
    }

    /// <summary>Acknowledges the last Ready: its committed entries are applied and its lists may be reused.</summary>
    public void Advance()
    {
        if (_handed is null) throw new InvalidOperationException("Advance called without GetReady");
        _applied = Math.Max(_applied, _handedThrough);
        _handed.Clear();
        _spare = _handed;
        _handed = null;
    }

    // ---------------------------------------------------------------- acceptor side

    private void OnAccept(in Message m)
    {
        if (m.Ballot < _promised) { SendNack(m.From); return; }
        FollowBallot(m.Ballot, m.From);
        _lastHeardLeader = _now;
        _timer.Reset();

        bool gap = false;
        var entries = m.Entries.Span;
        if (entries.Length > 0)
        {
            if (!EntriesContiguous(entries, m.Index) || entries[^1].Ballot > m.Ballot) return;   // malformed: ignore
            if (m.Index > _acceptedThrough + 1) gap = true;
            else
            {
                foreach (ref readonly var e in entries)
                {
                    if (e.Index < _log.FirstIndex) continue;              // compacted here, hence committed
                    if (_log.TryGet(e.Index, out var existing) && existing.Ballot == e.Ballot) continue;  // duplicate
                    _log.Set(e);
                }
                _acceptedThrough = Math.Max(_acceptedThrough, entries[^1].Index);
            }
        }
        AdvanceFollowerCommit(m.Commit);
        if (_followLeaderCompaction)
        {
            long target = Math.Min(m.LogStart - 1, _applied);
            if (target >= _log.FirstIndex) CompactLog(target);
        }
        Send(new Message { Type = MessageType.Accepted, From = Id, To = m.From, Ballot = _promised, Index = _acceptedThrough, Reject = gap });
        ReportState();
    }

    private void OnSnapshotRequired(in Message m)
    {
        if (m.Ballot < _promised) { SendNack(m.From); return; }
        FollowBallot(m.Ballot, m.From);
        _lastHeardLeader = _now;
        _timer.Reset();
        if (m.Index > _acceptedThrough)
        {
            if (_followLeaderCompaction)
            {
                InstallSnapshot(m.Index);   // the witness has no VM state to transfer
                _pending.SnapshotInstalled = m.Index;
            }
            else _pending.Snapshot = new SnapshotNeeded(m.From, m.Index);
        }
        else
        {
            // The leader's idea of our log is out of date: tell it where we are.
            Send(new Message { Type = MessageType.Accepted, From = Id, To = m.From, Ballot = _promised, Index = _acceptedThrough });
        }
        ReportState();
    }

    private void OnPrepare(in Message m)
    {
        if (m.Ballot < _promised) { SendNack(m.From); return; }
        if (!MayLead(m.From)) return;   // no promise to a node whose VM the latest ROLE entry left behind
        if (m.Ballot > _promised)
        {
            StepDown(m.Ballot, leaderId: 0);
            _timer.Reset();
        }
        long from = Math.Max(m.Index, _log.FirstIndex);
        var entries = from <= _log.LastIndex ? _log.Slice(from, int.MaxValue, long.MaxValue) : [];
        Send(new Message
        {
            Type = MessageType.Promise, From = Id, To = m.From, Ballot = _promised,
            Index = _log.FirstIndex, Commit = _commit, Entries = entries,
        });
        ReportState();
    }

    private void OnPreVote(in Message m)
    {
        if (m.Ballot <= _promised) { SendNack(m.From); return; }
        // Refuse while a leader is alive (a node cut off from the leader alone must not depose it), and refuse a
        // node whose VM the latest ROLE entry left behind (ConsensusNode.Eligibility.cs).
        bool leaderAlive = _role == ConsensusRole.Leader ||
                           (_leaderId != 0 && _now - _lastHeardLeader < _config.ElectionMinTicks);
        Send(new Message { Type = MessageType.PreVoteReply, From = Id, To = m.From, Ballot = m.Ballot, Reject = leaderAlive || !MayLead(m.From) });
    }

    private void OnNack(in Message m)
    {
        if (m.Ballot <= _promised) return;   // stale
        // Someone promised a higher ballot: our ballot (as leader or candidate) can no longer win. Promising the
        // higher ballot ourselves is always safe and stops us from accepting anything older.
        StepDown(m.Ballot, leaderId: 0);
        ReportState();
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>Adopts ballot (>= promised) led by leaderId as a follower; fences this node if it was leading.</summary>
    private void FollowBallot(Ballot ballot, int leaderId)
    {
        if (ballot > _promised || _role != ConsensusRole.Follower || _leaderId != leaderId)
            StepDown(ballot, leaderId);
    }

    private void StepDown(Ballot ballot, int leaderId)
    {
        if (_role == ConsensusRole.Leader)
            _pending.Fenced = new Fence(_promised, ballot > _promised ? FenceReason.HigherBallot : FenceReason.LostQuorum);
        if (ballot != _promised) _acceptedThrough = _commit;   // matches only count within one ballot
        _promised = ballot;
        _role = ConsensusRole.Follower;
        _leaderId = leaderId;
        _progress.Clear();
    }

    private void AdvanceFollowerCommit(long leaderCommit)
    {
        long c = Math.Min(leaderCommit, _acceptedThrough);
        if (c > _commit) _commit = c;
    }

    private static bool EntriesContiguous(ReadOnlySpan<LogEntry> entries, long first)
    {
        for (int i = 0; i < entries.Length; i++)
            if (entries[i].Index != first + i) return false;
        return true;
    }

    private bool IsPeer(int id) => Array.IndexOf(_peers, id) >= 0;

    private void Send(in Message m) => _pending.Messages.Add(m);

    private void SendNack(int to) =>
        Send(new Message { Type = MessageType.Nack, From = Id, To = to, Ballot = _promised });

    private void ReportState()
    {
        var s = new StateChange(_role, _promised, _leaderId);
        if (s != _lastReported)
        {
            _lastReported = s;
            _pending.Change = s;
        }
    }
}
