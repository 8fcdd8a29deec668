namespace Plover.Config;

/// <summary>How the backup is kept: Replicate (PLOVER: the backup VM executes the same ordered inputs, and a sync
/// sends only the pages whose hashes differ) or Checkpoint (Remus, COLO's periodic mode: inputs go to the primary
/// only, the backup VM never runs, and every sync sends every page the primary dirtied), or Adaptive: starts
/// replicating and switches between the two by what syncs cost (<see cref="Sync.ModePolicy"/>), each switch at a
/// committed SYNC entry. Both replicas must agree.</summary>
public enum SyncMode { Replicate, Checkpoint, Adaptive }

/// <summary>The syncvm trigger: a sync starts after IdleWindows windows of IdleWindowUs each in which the vCPUs
/// ran less than IdleThresholdUs, or when an epoch reaches MaxEpochMs. TimeoutMs bounds the wait for any one frame
/// of a sync (then it aborts).</summary>
public sealed record SyncConfig(int IdleWindowUs, int IdleThresholdUs, int IdleWindows, int MaxEpochMs)
{
    public static readonly SyncConfig Default = new(100, 25, 3, 200);

    public int TimeoutMs { get; init; } = 10_000;
    /// <summary>Idle windows that suffice once the guest's output is held in the epoch (at most IdleWindows): its
    /// clients wait for this sync, so every window waited adds to their latency.</summary>
    public int IdleWindowsWithOutput { get; init; } = 1;
    public SyncMode Mode { get; init; } = SyncMode.Replicate;
    /// <summary>Mode Adaptive's thresholds (<c>sync.adaptive</c>; defaults when absent); null in the other modes.</summary>
    public Sync.AdaptiveOptions? Adaptive { get; init; }
    /// <summary>The primary's guest resumes once the sync's union is copied, before the backup's ack (see
    /// Sync.SyncOptions.EarlyResume); output stays held either way.</summary>
    public bool EarlyResume { get; init; } = true;
    /// <summary>When the primary's guest resumes early: "auto" (default), "bitmaps" or "compare" (see
    /// Sync.SyncOptions.ResumePoint).</summary>
    public Sync.ResumePoint ResumePoint { get; init; } = Sync.ResumePoint.Auto;
    /// <summary>Only the device state sections that differ from the backup's travel (see
    /// Sync.SyncOptions.DeviceStateDelta).</summary>
    public bool DeviceStateDelta { get; init; } = true;
    /// <summary>Replicated drives: MiB of disk blocks a sync holds at a time, 1..1024 (see
    /// Sync.SyncOptions.DiskChunkBytes); the primary's counts.</summary>
    public int DiskChunkMiB { get; init; } = (int)(Sync.SyncOptions.DefaultDiskChunkBytes >> 20);
    /// <summary>Replicate mode: the sub-block size divergent pages travel in, 0 (whole pages) or 64..1024 (see
    /// Sync.SyncOptions.SubBlockBytes); the primary's counts.</summary>
    public int SubBlockBytes { get; init; } = Sync.SyncOptions.DefaultSubBlockBytes;
    /// <summary>Bytes of each sub-block hash the backup sends, 1, 2, 4 or 8 (see Sync.SyncOptions.SubBlockHashBytes);
    /// the primary's counts.</summary>
    public int SubBlockHashBytes { get; init; } = Sync.SyncOptions.DefaultSubBlockHashBytes;
}
