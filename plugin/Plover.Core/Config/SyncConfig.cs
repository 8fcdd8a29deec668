namespace Plover.Config;

/// <summary>The syncvm trigger: a sync starts after IdleWindows windows of IdleWindowUs each in which the vCPUs
/// ran less than IdleThresholdUs, or when an epoch reaches MaxEpochMs.</summary>
public sealed record SyncConfig(int IdleWindowUs, int IdleThresholdUs, int IdleWindows, int MaxEpochMs)
{
    public static readonly SyncConfig Default = new(100, 25, 3, 200);
}
