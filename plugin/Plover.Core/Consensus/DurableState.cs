namespace Plover.Consensus;

/// <summary>
/// What a node must keep across a restart for Paxos to stay safe: the highest ballot it promised and every
/// entry it accepted (with its ballot). Commit and applied indices are kept too so a restarted node resumes
/// delivering where its caller stopped. Plover keeps this in memory only (a crashed process loses it and must
/// not rejoin with a fresh identity in the same cluster); the simulator restarts nodes from it.
/// </summary>
public sealed record DurableState(Ballot Promised, ConsensusLog Log, long Commit, long Applied)
{
    /// <summary>
    /// Start state for a node that rejoins a running cluster having lost its memory (for example a restarted
    /// process): it follows whichever leader contacts it instead of assuming the fresh-cluster ballot 1, and
    /// catches up by resends or a snapshot. Losing an acceptor's memory counts as that node's failure: the
    /// cluster stays safe only while the other two keep theirs.
    /// </summary>
    public static DurableState Empty => new(Ballot.Zero, new ConsensusLog(), 0, 0);
}
