namespace Plover.Consensus;

/// <summary>A cluster member as the consensus core sees it. The witness is a member with CanLead = false.</summary>
public readonly record struct ConsensusMember(int Id, bool CanLead);

/// <summary>
/// Static configuration of one consensus node. All times are in ticks of the caller's logical clock
/// (the node wiring maps milliseconds to ticks; the defaults assume 1 tick = 1 ms).
/// </summary>
public sealed class ConsensusConfig
{
    public required int SelfId { get; init; }
    public required IReadOnlyList<ConsensusMember> Members { get; init; }
    /// <summary>The configured VM primary: leads ballot (1, InitialLeaderId) on a fresh start, without an election.</summary>
    public required int InitialLeaderId { get; init; }

    public int HeartbeatTicks { get; init; } = 1;
    public int ElectionMinTicks { get; init; } = 10;
    public int ElectionMaxTicks { get; init; } = 30;
    /// <summary>A leader resends from a follower's acknowledged index when it has made no progress for this long.</summary>
    public int RetransmitTicks { get; init; } = 4;
    /// <summary>Most entries / payload bytes in one Accept.</summary>
    public int MaxBatchEntries { get; init; } = 512;
    public int MaxBatchBytes { get; init; } = 1 << 20;
    /// <summary>Most entries sent to one follower and not yet acknowledged (pipelining window).</summary>
    public int MaxInflightEntries { get; init; } = 8192;
    /// <summary>A leader that has heard from no majority for ElectionMaxTicks steps down (and reports fenced).</summary>
    public bool CheckQuorum { get; init; } = true;
    /// <summary>
    /// Witness behaviour: truncate the log below the leader's compaction point, and on SnapshotRequired install an
    /// empty snapshot by itself (it has no VM state to transfer). Defaults to true for a member that cannot lead.
    /// </summary>
    public bool? FollowLeaderCompaction { get; init; }

    public int Majority => Members.Count / 2 + 1;
    public ConsensusMember Self => Member(SelfId);

    public ConsensusMember Member(int id)
    {
        for (int i = 0; i < Members.Count; i++)   // not foreach: an interface's enumerator is an allocation per message
            if (Members[i].Id == id) return Members[i];
        throw new ArgumentException($"node {id} is not a member");
    }

    /// <summary>Throws ArgumentException naming the first problem.</summary>
    public void Validate()
    {
        if (Members.Count < 1) throw new ArgumentException("consensus: no members");
        var ids = new HashSet<int>();
        foreach (var m in Members)
        {
            if (m.Id <= 0) throw new ArgumentException($"consensus: member id {m.Id} must be positive");
            if (!ids.Add(m.Id)) throw new ArgumentException($"consensus: member id {m.Id} is duplicated");
        }
        if (!ids.Contains(SelfId)) throw new ArgumentException($"consensus: self id {SelfId} is not a member");
        if (!ids.Contains(InitialLeaderId) || !Member(InitialLeaderId).CanLead)
            throw new ArgumentException($"consensus: initial leader {InitialLeaderId} must be a member that can lead");
        if (HeartbeatTicks < 1) throw new ArgumentException("consensus: HeartbeatTicks must be >= 1");
        if (ElectionMinTicks <= HeartbeatTicks) throw new ArgumentException("consensus: ElectionMinTicks must exceed HeartbeatTicks");
        if (ElectionMaxTicks < ElectionMinTicks) throw new ArgumentException("consensus: ElectionMaxTicks must be >= ElectionMinTicks");
        if (RetransmitTicks < 1) throw new ArgumentException("consensus: RetransmitTicks must be >= 1");
        if (MaxBatchEntries < 1 || MaxBatchBytes < 1 || MaxInflightEntries < MaxBatchEntries)
            throw new ArgumentException("consensus: batch limits must be positive and MaxInflightEntries >= MaxBatchEntries");
    }
}
