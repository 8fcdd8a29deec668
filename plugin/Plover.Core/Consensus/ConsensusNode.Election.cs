namespace Plover.Consensus;

/// <summary>Election: pre-vote, phase 1 (Prepare/Promise) and recovery of the log by a new leader.</summary>
public sealed partial class ConsensusNode
{
    private Ballot _candidateBallot;                       // ballot asked about (pre-vote) or prepared (phase 1)
    private readonly HashSet<int> _preVotes = new();
    private readonly Dictionary<int, Message> _promises = new();
    private long _recoverFrom;                             // first index recovered in phase 1 (commit + 1)

    private void OnElectionTimeout()
    {
        _timer.Reset();
        if (!_canCampaign || !MayLead(Id))
        {
            // The witness (or a node told not to campaign, or one the latest ROLE entry left behind) just stops
            // naming a leader it no longer hears.
            _leaderId = 0;
            ReportState();
            return;
        }
        // Restart with a fresh pre-vote, whether we were following or our previous attempt stalled.
        _candidateBallot = new Ballot(Math.Max(_promised.Round, _maxSeenRound) + 1, Id);
        _role = ConsensusRole.PreCandidate;
        _leaderId = 0;
        _preVotes.Clear();
        _preVotes.Add(Id);
        _promises.Clear();
        foreach (int p in _peers)
            Send(new Message { Type = MessageType.PreVote, From = Id, To = p, Ballot = _candidateBallot, Commit = _commit });
        ReportState();
        if (_preVotes.Count >= _config.Majority) Campaign();
    }

    private void OnPreVoteReply(in Message m)
    {
        if (_role != ConsensusRole.PreCandidate || m.Ballot != _candidateBallot || m.Reject) return;
        _preVotes.Add(m.From);
        if (_preVotes.Count >= _config.Majority) Campaign();
    }

    /// <summary>Phase 1a: promise our new ballot to ourselves, then ask everyone for theirs.</summary>
    private void Campaign()
    {
        if (_candidateBallot <= _promised) return;   // someone moved past it meanwhile; the timer retries
        _promised = _candidateBallot;
        _acceptedThrough = _commit;
        _role = ConsensusRole.Candidate;
        _leaderId = 0;
        _recoverFrom = _commit + 1;
        _promises.Clear();
        _timer.Reset();
        foreach (int p in _peers)
            Send(new Message { Type = MessageType.Prepare, From = Id, To = p, Ballot = _promised, Index = _recoverFrom });
        ReportState();
        if (1 + _promises.Count >= _config.Majority) BecomeLeader();
    }

    private void OnPromise(in Message m)
    {
        if (_role != ConsensusRole.Candidate || m.Ballot != _promised || _promises.ContainsKey(m.From)) return;
        long first = Math.Max(_recoverFrom, m.Index);
        if (m.Entries.Length > 0 && !EntriesContiguous(m.Entries.Span, first)) return;   // malformed: ignore
        if (m.Index > _recoverFrom)
        {
            // The acceptor compacted entries we do not have as committed: its promise cannot tell us their
            // values. Another promise may still do; otherwise the caller must bring a snapshot.
            _pending.Snapshot = new SnapshotNeeded(m.From, m.Index - 1);
            return;
        }
        _promises[m.From] = m.Detach();   // kept until a majority promised
        if (1 + _promises.Count >= _config.Majority) BecomeLeader();
    }

    /// <summary>
    /// Phase 1 done: for every slot from our commit index on, take the value accepted in the highest ballot by
    /// anyone in the majority (ourselves included), re-propose it in our ballot, then append our ROLE entry.
    /// </summary>
    private void BecomeLeader()
    {
        long last = _log.LastIndex;
        foreach (var p in _promises.Values)
            if (p.Entries.Length > 0) last = Math.Max(last, p.Entries.Span[^1].Index);

        for (long i = _recoverFrom; i <= last; i++)
        {
            bool found = HighestBallotAt(i, _promises.Values, _log.TryGet(i, out var best), ref best);
            // Acceptor logs are contiguous, so a hole cannot occur; fill one with a no-op all the same.
            _log.Set(found ? best with { Ballot = _promised } : new LogEntry(i, _promised, EntryType.Noop, ReadOnlyMemory<byte>.Empty));
        }
        _log.Set(new LogEntry(last + 1, _promised, EntryType.Role, EntryPayloads.EncodeRole(_promised, Id)));

        _role = ConsensusRole.Leader;
        _leaderId = Id;
        InitLeaderState(_recoverFrom);
        foreach (var (id, p) in _promises)
        {
            // A promiser's committed prefix equals ours: start sending right after it.
            var pr = _progress[id];
            pr.Match = Math.Min(p.Commit, _log.LastIndex);
            pr.Next = Math.Min(pr.Next, pr.Match + 1);
        }
        _promises.Clear();
        ReportState();
    }

    /// <summary>
    /// Phase 1's choice for slot i: the entry accepted in the highest ballot among the messages' entries (each
    /// message's contiguous from Entries[0]) and best (when found already). False if nobody had the slot.
    /// </summary>
    private static bool HighestBallotAt(long i, Dictionary<int, Message>.ValueCollection messages, bool found, ref LogEntry best)
    {
        foreach (var m in messages)
        {
            var entries = m.Entries.Span;
            if (entries.Length == 0) continue;
            long offset = i - entries[0].Index;
            if (offset < 0 || offset >= entries.Length) continue;
            var e = entries[(int)offset];
            if (!found || e.Ballot > best.Ballot) { best = e; found = true; }
        }
        return found;
    }
}
