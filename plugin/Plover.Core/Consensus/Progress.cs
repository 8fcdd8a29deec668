namespace Plover.Consensus;

/// <summary>What a leader knows about one follower's log in the current ballot.</summary>
internal sealed class Progress
{
    /// <summary>Highest index known to equal the leader's log on the follower.</summary>
    public long Match;
    /// <summary>Next index to send (everything in [Match + 1, Next) is in flight).</summary>
    public long Next;
    /// <summary>Highest commit index sent to this follower.</summary>
    public long CommitSent;
    public long LastProgressTick;
    public long LastResendTick = long.MinValue / 2;
    public long LastSnapshotTick = long.MinValue / 2;
    /// <summary>Heard from since the last quorum check.</summary>
    public bool RecentActive;
    /// <summary>When this follower was last heard from (ticks).</summary>
    public long LastHeardTick;
    /// <summary>Sent something in the current heartbeat interval (so no empty heartbeat is needed).</summary>
    public bool SentSinceHeartbeat;
}
