namespace Plover.Consensus;

/// <summary>
/// What a node must keep across a restart for Paxos to stay safe: the highest ballot it promised and every
/// entry it accepted (with its ballot). Commit and applied indices are kept too so a restarted node resumes
/// delivering where its caller stopped. Plover keeps this in memory only (a crashed process loses it and must
/// not rejoin with a fresh identity in the same cluster); the simulator restarts nodes from it.
/// </summary>
public sealed record DurableState(Ballot Promised, ConsensusLog Log, long Commit, long Applied);
