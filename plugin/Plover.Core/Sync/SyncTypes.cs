namespace Plover.Sync;

public enum SyncRole { Primary, Backup }

/// <summary>
/// One sync to run: both replicas stopped (or will stop) their VM right after injecting every log entry before
/// LogIndex, the index of the committed SYNC entry for Epoch. The engine does not run consensus: it is told.
/// FullSync marks every page dirty first (a joining or returning backup: the hashes then find what differs).
/// InputDigest is the replica's running digest of every INPUT entry it injected before LogIndex (recorded in the
/// stats, so the two replicas' sync logs show they executed the same inputs in the same order).
/// </summary>
public sealed record SyncRequest(ulong Epoch, long LogIndex, bool FullSync = false, ulong InputDigest = 0)
{
    /// <summary>Backup only: a joining backup that has no log waits for the primary's next sync and takes its cut
    /// (epoch, log index, full, input digest) from the SyncBegin frame; the fields above are ignored.</summary>
    public static SyncRequest Join { get; } = new(0, 0, FullSync: true) { IsJoin = true };

    public bool IsJoin { get; private init; }
}

public enum SyncOutcome { Completed, Aborted }

/// <summary>Points in the protocol where <see cref="SyncOptions.StepHook"/> is called (tests inject crashes there).</summary>
public enum SyncStep
{
    /// <summary>VM stopped, dirt harvested, nothing sent yet.</summary>
    Stopped,
    /// <summary>Both bitmaps exchanged; the union is known.</summary>
    BitmapsExchanged,
    /// <summary>Own hashes computed.</summary>
    Hashed,
    /// <summary>Backup: after each hash frame sent. Primary: after each hash frame received.</summary>
    HashChunk,
    /// <summary>Primary: after each page batch sent. Backup: after each page batch staged.</summary>
    PageBatch,
    /// <summary>Primary: all pages sent, device state not yet. Backup: all pages staged (device state frames next).</summary>
    BeforeDeviceState,
    /// <summary>Primary: everything sent, waiting for the ack. Backup: everything staged, not yet applied.</summary>
    BeforeApply,
    /// <summary>Backup: state applied and VM resumed, ack not yet sent.</summary>
    BeforeAck,
}

public sealed class SyncOptions
{
    /// <summary>Longest wait for any one frame from the peer; then the sync is aborted.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>A joining backup's longest wait for the primary to begin a sync (then it gives up and retries).</summary>
    public TimeSpan JoinTimeout { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>Hashing threads (0 = every core).</summary>
    public int HashThreads { get; init; }
    /// <summary>Divergent pages per frame (1 MiB at 256).</summary>
    public int PagesPerFrame { get; init; } = 256;
    /// <summary>Hashes per frame.</summary>
    public int HashesPerFrame { get; init; } = 64 * 1024;
    /// <summary>Largest device state accepted from the primary.</summary>
    public long MaxDeviceStateBytes { get; init; } = 256L << 20;
    /// <summary>Checkpointing (as Remus and COLO's periodic mode): no hashing, the primary sends every page it
    /// dirtied. The backup's VM never runs, so its RAM is the last checkpoint and its own bitmap is left out.</summary>
    public bool Checkpoint { get; init; }
    /// <summary>Completed and aborted syncs kept in <see cref="SyncMetrics"/>.</summary>
    public int HistoryLength { get; init; } = 64;
    /// <summary>Where warnings and errors go (aborts, running unprotected). Null: stderr.</summary>
    public Action<string>? Log { get; init; }
    /// <summary>Test hook called on the engine thread at each <see cref="SyncStep"/>; throwing aborts the sync.</summary>
    public Action<SyncRole, SyncStep>? StepHook { get; init; }
}

/// <summary>The peer broke the sync protocol (wrong frame, epoch, layout, counts): the sync is aborted.</summary>
public sealed class SyncProtocolException(string message) : Exception(message);
