namespace Plover.Config;

/// <summary>The syncvm trigger: a sync starts after IdleWindows windows of IdleWindowUs each in which the vCPUs
/// ran less than IdleThresholdUs, or when an epoch reaches MaxEpochMs. TimeoutMs bounds the wait for any one frame
/// of a sync (then it aborts); RemusMode sends every dirty page without hashing (the checkpointing baseline that
/// benchmarks compare against; both replicas must agree on it).</summary>
public sealed record SyncConfig(int IdleWindowUs, int IdleThresholdUs, int IdleWindows, int MaxEpochMs)
{
    public static readonly SyncConfig Default = new(100, 25, 3, 200);

    public int TimeoutMs { get; init; } = 10_000;
    public bool RemusMode { get; init; }
}
