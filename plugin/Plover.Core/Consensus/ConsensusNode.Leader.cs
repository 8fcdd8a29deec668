namespace Plover.Consensus;

/// <summary>Leader: batched, pipelined phase 2, commit, heartbeats, retransmission and quorum checks.</summary>
public sealed partial class ConsensusNode
{
    private readonly Dictionary<int, Progress> _progress = new();
    private long _heartbeatElapsed;
    private long _quorumElapsed;

    private void InitLeaderState(long next)
    {
        _progress.Clear();
        foreach (int p in _peers)
            _progress[p] = new Progress { Match = 0, Next = next, LastProgressTick = _now, RecentActive = true, LastHeardTick = _now };
        _heartbeatElapsed = 0;
        _quorumElapsed = 0;
        _timer.Reset();
        MaybeCommit();   // a single-member cluster commits alone
    }

    private void TickLeader()
    {
        if (_config.CheckQuorum && ++_quorumElapsed >= _config.ElectionMaxTicks)
        {
            _quorumElapsed = 0;
            int active = 1;
            foreach (var pr in _progress.Values)
            {
                if (pr.RecentActive) active++;
                pr.RecentActive = false;
            }
            if (active < _config.Majority)
            {
                StepDown(_promised, leaderId: 0);   // reports Fence(LostQuorum)
                _timer.Reset();
                ReportState();
                return;
            }
        }

        foreach (var pr in _progress.Values)
        {
            // Go back to the last acknowledged index when a follower stopped making progress: lost messages.
            if (pr.Match < _log.LastIndex && pr.Next > pr.Match + 1 &&
                _now - pr.LastProgressTick >= _config.RetransmitTicks &&
                _now - pr.LastResendTick >= _config.RetransmitTicks)
            {
                pr.Next = pr.Match + 1;
                pr.LastResendTick = _now;
                pr.LastProgressTick = _now;
            }
        }

        if (++_heartbeatElapsed >= _config.HeartbeatTicks)
        {
            _heartbeatElapsed = 0;
            SendPendingEntries();
            foreach (var (id, pr) in _progress)
            {
                if (!pr.SentSinceHeartbeat)
                {
                    pr.CommitSent = _commit;
                    Send(new Message
                    {
                        Type = MessageType.Accept, From = Id, To = id, Ballot = _promised, Index = pr.Next,
                        Commit = _commit, LogStart = _log.FirstIndex,
                    });
                }
                pr.SentSinceHeartbeat = false;
            }
        }
    }

    /// <summary>Entries a follower lacks and may receive now, or a commit index it could use.</summary>
    private bool HasSomethingToSend()
    {
        if (_role != ConsensusRole.Leader) return false;
        foreach (var pr in _progress.Values)
        {
            if (pr.Next < _log.FirstIndex) continue;   // needs a snapshot: handled on the heartbeat
            if (pr.Next <= _log.LastIndex && pr.Next - pr.Match - 1 < _config.MaxInflightEntries) return true;
            if (Math.Min(_commit, pr.Match) > pr.CommitSent) return true;
        }
        return false;
    }

    /// <summary>Sends every follower what it lacks, in batches, within its pipelining window.</summary>
    private void SendPendingEntries()
    {
        foreach (var (id, pr) in _progress)
        {
            if (pr.Next < _log.FirstIndex)
            {
                if (_now - pr.LastSnapshotTick >= _config.RetransmitTicks)
                {
                    pr.LastSnapshotTick = _now;
                    pr.SentSinceHeartbeat = true;
                    Send(new Message { Type = MessageType.SnapshotRequired, From = Id, To = id, Ballot = _promised, Index = _log.FirstIndex - 1, Commit = _commit });
                }
                continue;
            }
            while (pr.Next <= _log.LastIndex && pr.Next - pr.Match - 1 < _config.MaxInflightEntries)
            {
                int room = (int)Math.Min(_config.MaxBatchEntries, _config.MaxInflightEntries - (pr.Next - pr.Match - 1));
                var entries = _pending.Lend(_log.Range(pr.Next, room, _config.MaxBatchBytes));
                if (pr.Next == pr.Match + 1) pr.LastProgressTick = _now;   // nothing was in flight: the wait starts now
                Send(new Message
                {
                    Type = MessageType.Accept, From = Id, To = id, Ballot = _promised, Index = pr.Next,
                    Commit = _commit, LogStart = _log.FirstIndex, Entries = entries,
                });
                pr.Next += entries.Length;
                pr.CommitSent = _commit;
                pr.SentSinceHeartbeat = true;
            }
            // Tell a follower at once about a commit it can use, instead of at the next heartbeat: the backup
            // injects inputs (and reaches a sync cut) one round trip after the primary, not one heartbeat later.
            if (Math.Min(_commit, pr.Match) > pr.CommitSent)
            {
                Send(new Message
                {
                    Type = MessageType.Accept, From = Id, To = id, Ballot = _promised, Index = pr.Next,
                    Commit = _commit, LogStart = _log.FirstIndex,
                });
                pr.CommitSent = _commit;
                pr.SentSinceHeartbeat = true;
            }
        }
    }

    private void OnAccepted(in Message m)
    {
        if (_role != ConsensusRole.Leader || m.Ballot != _promised) return;   // stale: another ballot
        var pr = _progress[m.From];
        pr.RecentActive = true;
        pr.LastHeardTick = _now;
        long match = Math.Min(m.Index, _log.LastIndex);
        if (match > pr.Match)
        {
            pr.Match = match;
            pr.LastProgressTick = _now;
            MaybeCommit();
        }
        if (pr.Next <= pr.Match) pr.Next = pr.Match + 1;
        // A gap: something in flight was lost. Resend from the acknowledged index, at most once per interval
        // (reordered replies report the same gap several times).
        if (m.Reject && pr.Next > m.Index + 1 && _now - pr.LastResendTick >= _config.RetransmitTicks)
        {
            // A follower reporting less than it acknowledged before lost state (or this reply is old): trust it.
            pr.Match = Math.Min(pr.Match, m.Index);
            pr.Next = m.Index + 1;
            pr.LastResendTick = _now;
        }
    }

    /// <summary>Commits the highest index a majority (this node included) holds in this ballot.</summary>
    private void MaybeCommit()
    {
        Span<long> matches = stackalloc long[_progress.Count + 1];
        matches[0] = _log.LastIndex;
        int n = 1;
        foreach (var pr in _progress.Values) matches[n++] = pr.Match;
        matches.Sort();
        long candidate = matches[matches.Length - _config.Majority];
        // Only entries of our own ballot are counted (everything past the old commit index was re-proposed in it).
        if (candidate > _commit && _log[candidate].Ballot == _promised) _commit = candidate;
    }
}
