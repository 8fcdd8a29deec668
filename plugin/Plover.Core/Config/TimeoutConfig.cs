namespace Plover.Config;

/// <summary>Consensus timers in milliseconds: heartbeat &lt; electionMin &lt;= electionMax. StartupMs: how long a
/// node waits at start for the cluster it needs (a replica: a consensus leader and its sync link to the other
/// replica; the witness: a majority) before it gives up with an error naming what is missing.</summary>
public sealed record TimeoutConfig(double HeartbeatMs, double ElectionMinMs, double ElectionMaxMs)
{
    public static readonly TimeoutConfig Default = new(1, 10, 30);

    public int StartupMs { get; init; } = 30_000;
}
