namespace Plover.Config;

/// <summary>Consensus timers in milliseconds: heartbeat &lt; electionMin &lt;= electionMax.</summary>
public sealed record TimeoutConfig(double HeartbeatMs, double ElectionMinMs, double ElectionMaxMs)
{
    public static readonly TimeoutConfig Default = new(1, 10, 30);
}
