using Plover.Config;
using Plover.Idle;
using Plover.Sync;

namespace Plover.Node;

public enum ReplicaRole { Primary, Backup }

/// <summary>How a <see cref="Replica"/> runs: its role at start, syncvm settings, batching, and the idle trigger.</summary>
public sealed class ReplicaOptions
{
    public required ReplicaRole Role { get; init; }
    /// <summary>A backup that joins a running cluster: it has no valid state until the primary's full sync.</summary>
    public bool Joining { get; init; }
    /// <summary>A fresh cluster's backup with replicated drives: its images are not known to be its primary's (they
    /// may be older, or torn) until its first sync compared them, so until then it neither campaigns nor serves (if
    /// the primary stops first, the cluster waits for the operator instead of booting images that lack writes).</summary>
    public bool ImagesStale { get; init; }
    /// <summary>The other replica's node id (the backup a primary protects itself with).</summary>
    public int PeerId { get; init; }
    /// <summary>How long the primary waits for a lost backup before it proposes to run without it (its output
    /// is held meanwhile).</summary>
    public TimeSpan BackupLoss { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>syncvm engine options (timeouts, hashing threads, Remus mode).</summary>
    public SyncOptions Sync { get; init; } = new();
    /// <summary>Adaptive mode (null: off): switch between replication and checkpointing by what syncs cost; the mode
    /// the replicas start in is <see cref="SyncOptions.Checkpoint"/>.</summary>
    public AdaptiveOptions? Adaptive { get; init; }
    /// <summary>Idle detection and maximum epoch; used only when <see cref="VcpuThreadIds"/> is given.</summary>
    public SyncConfig? Idle { get; init; }
    /// <summary>The guest's vCPU thread ids (vcpu_thread_ids at machine_ready); null: no idle monitor (syncs only by <see cref="Replica.ProposeSync"/>).</summary>
    public int[]? VcpuThreadIds { get; init; }
    /// <summary>Where the idle monitor reads vCPU time (null: /proc schedstat); tests pass a fake.</summary>
    public ICpuTimeSource? CpuTime { get; init; }
    /// <summary>After an aborted sync the idle trigger waits this long before it may propose again (no stop/start churn while the backup is away).</summary>
    public TimeSpan RetryAfterAbort { get; init; } = TimeSpan.FromMilliseconds(500);
    /// <summary>Largest INPUT entry payload; a bigger backlog is split into several entries.</summary>
    public int MaxInputEntryBytes { get; init; } = 64 << 10;
    /// <summary>Stolen bytes waiting to be proposed beyond which new frames are dropped (the client retransmits).</summary>
    public int MaxPendingInputBytes { get; init; } = 16 << 20;
    /// <summary>The first sync marks every page dirty: two independently booted VMs differ everywhere.</summary>
    public bool FirstSyncFull { get; init; } = true;
    public Action<string> Log { get; init; } = m => Console.Error.WriteLine(m);
}
