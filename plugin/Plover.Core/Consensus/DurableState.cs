namespace Plover.Consensus;

/// <summary>
/// What a node must keep across a restart for Paxos to stay safe: the highest ballot it promised and every
/// entry it accepted (with its ballot). Commit and applied indices are kept too so a restarted node resumes
/// delivering where its caller stopped. Plover keeps this in memory only; the simulator restarts nodes from it.
/// MemoryLost marks a node that has none of it (or is still rebuilding it): it must recover before it votes.
/// </summary>
public sealed record DurableState(Ballot Promised, ConsensusLog Log, long Commit, long Applied, bool MemoryLost = false)
{
    /// <summary>
    /// Start state for a node that restarts having lost its memory (a restarted process: Plover keeps consensus
    /// state in memory only). It neither votes nor promises nor counts toward any quorum until it has rebuilt its
    /// state from enough other members (ConsensusNode.Recovery.cs), so one such restart cannot lose committed entries.
    /// </summary>
    public static DurableState Empty => new(Ballot.Zero, new ConsensusLog(), 0, 0, MemoryLost: true);
}
