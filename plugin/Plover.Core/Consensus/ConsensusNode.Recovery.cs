namespace Plover.Consensus;

/// <summary>
/// Recovery of a node that restarted without its consensus memory (<see cref="DurableState.Empty"/>).
///
/// The danger: an empty acceptor that promises at once lets a candidate win without entries this node had
/// accepted before, and an entry chosen by this node and one other then survives only on that other node. So,
/// as in Viewstamped Replication's recovery protocol (Liskov and Cowling, "VR Revisited", 4.3) and the rule of
/// "Paxos Made Live" (a replica that lost its disk takes no part until it has rebuilt its state), a recovering
/// node grants no pre-vote, promise or acceptance and never campaigns. It asks every other member, with a nonce
/// fresh for this incarnation, and waits for answers from n - q + 1 of them (q = majority; for 3 nodes: both
/// others). Then it takes, slot by slot, the entry of the highest ballot among the answers (a phase-1 read),
/// promises the highest ballot any of them promised, and takes part again. Why each rule holds:
///  - Nothing chosen is lost: an entry chosen with this node's old vote was accepted by q - 1 others too, and
///    n - q + 1 answers always include one of them (the other n - q cannot fill the set), whose entry in that
///    slot has that ballot or a higher one, which by Paxos carries the same value.
///  - No promise is broken: a ballot this node promised before it lost its memory was promised by q - 1 others
///    as well (its candidate among them), and again one of them answers, with that ballot or a higher one.
///  - Old answers cannot fool it: only answers carrying this incarnation's nonce count, so each was written after
///    the memory was lost, by a node whose promise and accepted ballots only grow.
/// One answer is enough when it comes from a node X whose last ROLE entry, committed at X, says X runs without a
/// backup: from then on only X can lead (ConsensusNode.Eligibility.cs), so every chosen entry, and every ballot this
/// node can have promised, is in X's log and promise. That keeps a primary that runs alone available when the
/// witness restarts (the dropped backup's answer is not needed), and lets a restarted backup rejoin it.
/// Every entry it takes was really accepted by someone in that ballot, so claiming it changes nothing Paxos relies
/// on. Entries below the highest compaction point among the answers are committed and covered by a VM snapshot:
/// the node skips them (<see cref="Ready.Recovered"/>); a VM node takes a full sync from the primary anyway.
/// Two members without memory at once is beyond what 3 nodes tolerate: the node then waits (safe, not live).
/// </summary>
public sealed partial class ConsensusNode
{
    private bool _recovering;
    private ulong _recoveryNonce;
    private long _recoveryAskedAt;
    private readonly Dictionary<int, Message> _recoveryAnswers = new();

    /// <summary>True while this node, restarted without memory, rebuilds its state: it does not vote.</summary>
    public bool IsRecovering => _recovering;

    /// <summary>Answers needed from other members: enough to meet every majority that contains this node.</summary>
    private int RecoveryAnswersNeeded => Math.Min(_peers.Length, _config.Members.Count - _config.Majority + 1);

    private void StartRecovery()
    {
        _recovering = true;
        do _recoveryNonce = (ulong)_random.NextInt64(); while (_recoveryNonce == 0);
        _recoveryAnswers.Clear();
        if (RecoveryAnswersNeeded == 0) FinishRecovery();
        else AskForRecovery();
    }

    /// <summary>Asks again every election timeout: the answers of a peer that was unreachable, or newer ones.</summary>
    private void TickRecovery()
    {
        if (_now - _recoveryAskedAt >= _config.ElectionMinTicks) AskForRecovery();
    }

    private void AskForRecovery()
    {
        _recoveryAskedAt = _now;
        foreach (int p in _peers)
            Send(new Message { Type = MessageType.RecoveryRequest, From = Id, To = p, Ballot = Ballot.Zero, Nonce = _recoveryNonce });
    }

    private void OnRecoveryRequest(in Message m)
    {
        // A node recovering itself has nothing trustworthy to give (it does not get here: see Step).
        Send(new Message
        {
            Type = MessageType.RecoveryResponse, From = Id, To = m.From, Ballot = _promised, Index = _log.FirstIndex,
            Commit = _commit, Entries = _log.Slice(_log.FirstIndex, int.MaxValue, long.MaxValue), Nonce = m.Nonce,
            LeaderId = _leaderId,
        });
    }

    private void OnRecoveryResponse(in Message m)
    {
        if (!_recovering || m.Nonce != _recoveryNonce) return;   // stale: written before this incarnation asked
        if (m.Index < 1 || m.Commit < m.Index - 1 || (m.Entries.Length > 0 && !EntriesContiguous(m.Entries.Span, m.Index))) return;   // malformed
        _recoveryAnswers[m.From] = m.Detach();   // kept until enough members answered
        if (_recoveryAnswers.Count >= RecoveryAnswersNeeded || RunsAloneCommitted(m)) FinishRecovery();
    }

    /// <summary>The answer's last ROLE entry names its sender primary without a backup, and the sender knows it committed.</summary>
    private static bool RunsAloneCommitted(in Message answer)
    {
        var entries = answer.Entries.Span;
        for (int i = entries.Length - 1; i >= 0; i--)
            if (RoleOf(entries[i]) is { } role)
                return role.Primary == answer.From && role.Backup == 0 && entries[i].Index <= answer.Commit;
        return false;
    }

    /// <summary>Phase-1 read over the answers: highest promise, highest-ballot entry per slot, highest commit.</summary>
    private void FinishRecovery()
    {
        Ballot promised = _promised;
        long first = _log.FirstIndex;   // past 1 only if the caller installed a snapshot meanwhile
        long commit = _commit;
        foreach (var a in _recoveryAnswers.Values)
        {
            if (a.Ballot > promised) promised = a.Ballot;
            first = Math.Max(first, a.Index);
            commit = Math.Max(commit, a.Commit);
        }

        var log = new ConsensusLog();
        log.CompactThrough(first - 1);
        for (long i = first; ; i++)
        {
            LogEntry best = default;
            if (!HighestBallotAt(i, _recoveryAnswers.Values, found: false, ref best)) break;   // past the longest answer
            log.Set(best);
        }

        // A leader that answered in the highest ballot is most likely still leading: treat it as just heard, so
        // this node does not grant a pre-vote against it before its next heartbeat arrives.
        int leader = 0;
        foreach (var a in _recoveryAnswers.Values)
            if (a.Ballot == promised && a.LeaderId == a.From && a.From == promised.NodeId) leader = a.From;

        _log = log;
        _roleBeforeLog = null;   // entries below the answers' logs were never seen here
        _promised = promised;
        _maxSeenRound = Math.Max(_maxSeenRound, promised.Round);
        _commit = Math.Clamp(commit, first - 1, log.LastIndex);
        _applied = _delivered = Math.Max(_applied, first - 1);
        _acceptedThrough = _commit;   // beyond the committed prefix nothing is known to match a leader's log
        _role = ConsensusRole.Follower;
        _leaderId = leader;
        _lastHeardLeader = _now;
        _timer.Reset();
        _recovering = false;
        _recoveryAnswers.Clear();
        _pending.Recovered = _applied;
        ReportState();
    }
}
