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

    /// <summary>This sync runs in checkpoint mode (the mode in effect before its SYNC entry): no hashes, every page
    /// in the union is sent, the backup's VM did not execute (see <see cref="BackupOwnDirt"/>). Both replicas take
    /// it from the log; the backup checks the primary's against its own. Null: the engine's
    /// <see cref="SyncOptions.Checkpoint"/> (an engine used alone, as the sync tests and benchmarks do).</summary>
    public bool? Checkpoint { get; init; }
    /// <summary>The mode both replicas continue in after this cut (the SYNC entry's next mode); a joining backup
    /// adopts the primary's. Null: this sync's mode.</summary>
    public bool? NextCheckpoint { get; init; }
    /// <summary>Backup, checkpoint sync: its VM may have run since its last completed sync (it replicated until a
    /// switch to checkpointing whose sync aborted), so its own dirty pages join the union; otherwise a checkpoint
    /// backup's bitmap holds only what the last apply wrote and is left out.</summary>
    public bool BackupOwnDirt { get; init; }
    /// <summary>Bytes of the INPUT entries applied in the epoch this cut closes (the replica core's accounting for
    /// adaptive mode; the engine does not read it).</summary>
    public long InputBytes { get; init; }

    /// <summary>Stopwatch timestamp of the replica's vm_stop at the SYNC entry (0: none; the engine's own stop counts).
    /// The guest's pause is measured from it: a sync queued behind an earlier one keeps the VM stopped meanwhile.</summary>
    public long StoppedAt { get; init; }

    /// <summary>How the epoch reached this cut on this replica (recorded in the stats; the engine does not read it).</summary>
    public SyncLead Lead { get; init; } = SyncLead.None;
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
    /// <summary>Backup: state applied, ack not yet sent, VM not yet resumed (it resumes after the ack).</summary>
    BeforeAck,
    /// <summary>Backup: half the staged pages are in guest RAM, devices not loaded (a crash here tears its state).</summary>
    Applying,
    /// <summary>Primary, early resume: the union copied and the guest running again; nothing hashed or sent yet.</summary>
    ResumedEarly,
    /// <summary>Sub-block mode. Primary: the divergent list sent. Backup: the divergent list received.</summary>
    DivergentListed,
    /// <summary>Sub-block mode, once per chunk. Primary: its own sub-block hashes of the chunk's pages computed.
    /// Backup: those of the chunk's first frame computed (it hashes and sends frame by frame).</summary>
    SubBlocksHashed,
    /// <summary>Sub-block mode. Backup: after each sub-block hash frame sent. Primary: after each one received.</summary>
    SubBlockHashChunk,
    /// <summary>UCX page puts, primary: a batch put into the backup's staging and flushed, its completion frame not
    /// yet sent (the backup has not looked at it).</summary>
    PagesPut,
    /// <summary>Replicated drives. Primary: after each batch of disk blocks sent. Backup: after each batch staged.</summary>
    DiskBatch,
    /// <summary>Replicated drives, after each chunk of the union. Primary: its divergent blocks sent. Backup: they
    /// arrived (staged, or written when the sync sends more than a chunk's worth).</summary>
    DiskChunk,
    /// <summary>Replicated drives, backup, main thread: its drive images are marked torn and the staged blocks are
    /// about to be written (the RAM is applied, the devices not loaded).</summary>
    DiskApplying,
    /// <summary>Sub-block mode, only when a page failed its check (a sub-block hash collision). Backup: the REPAIR list
    /// sent, the whole pages not yet received, nothing written. Primary: the whole pages sent, no ack yet.</summary>
    Repairing,
}

/// <summary>The sync protocol's version (proto/sync.proto): both sides send it with their bitmap and abort on a
/// mismatch. 6: sub-block hashes shortened to <see cref="SyncOptions.SubBlockHashBytes"/>, each page's root (the
/// hash of its full sub-block hashes) with its sub-blocks, and the REPAIR round. 5: the disk part in chunks (SyncBegin.disk_chunk_blocks; SyncDisk.chunk_first). 4: over UCX, the backup's SyncStaging offer after the bitmaps and SyncPages completions of pages put
/// into its staging (TCP links send the same frames as 3, but a 3 peer is refused there too: one check, one rule); 3: the device state delta (SyncBegin's checkpoint and next_checkpoint, the mode per sync for adaptive
/// mode, came later without a new version: an older peer reads them as replicate, and a sync whose two sides
/// disagree on the mode still aborts at the bitmap's send_all) (and, with the same frames, the pipelined sub-block round, whose chunks a
/// backup takes only up to <see cref="MaxChunkPages"/>); 2: sub-blocks and the divergent list; 1, the protocol before them, sent
/// none (reads as 0).</summary>
public static class SyncProtocol
{
    public const uint Version = 6;

    /// <summary>Sub-block sizes the protocol allows (a power of two, so a page holds a whole number of them and
    /// the mask of one page fits in a u64).</summary>
    public const int MinSubBlockBytes = 64, MaxSubBlockBytes = 1024;

    /// <summary>Largest chunk of divergent pages a backup accepts. The sub-block round is pipelined (the backup sends
    /// one chunk of hashes ahead while the primary sends the previous chunk's sub-blocks), which cannot deadlock only
    /// while a chunk's sub-blocks (at most 1024 pages, 4 MiB) and hashes (512 KiB) fit in the connection's socket
    /// buffers (4 MiB asked on each side, which Linux doubles).</summary>
    public const int MaxChunkPages = 1024;

    /// <summary>Largest chunk of disk blocks a backup accepts from the primary's SyncBegin (1 GiB of 4 KiB blocks):
    /// the backup holds up to two chunks (the blocks it reads, the blocks it stages).</summary>
    public const ulong MaxDiskChunkBlocks = 1 << 18;

    public static bool IsValidSubBlockSize(long bytes) =>
        bytes >= MinSubBlockBytes && bytes <= MaxSubBlockBytes && (bytes & (bytes - 1)) == 0;

    /// <summary>Lengths a sub-block hash may be shortened to (<see cref="SyncOptions.SubBlockHashBytes"/>).</summary>
    public static bool IsValidSubBlockHashBytes(long bytes) => bytes is 1 or 2 or 4 or 8;
}

public sealed record SyncOptions
{
    /// <summary>Longest wait for any one frame from the peer; then the sync is aborted.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>A joining backup's longest wait for the primary to begin a sync (then it gives up and retries).</summary>
    public TimeSpan JoinTimeout { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>Hashing threads (0 = every core).</summary>
    public int HashThreads { get; init; }
    /// <summary>Divergent pages per frame (1 MiB at 256).</summary>
    public int PagesPerFrame { get; init; } = 256;
    /// <summary>UCX page puts, whole pages: pages per put and its completion frame (8 MiB at 2048). Larger than a
    /// frame's batch because each put waits for a flush, a round trip: over UCX's TCP emulation 100,000 scattered
    /// pages moved 287 MiB/s in 1 MiB puts and 493 in 8 MiB ones (bench sync).</summary>
    public int PutPagesPerBatch { get; init; } = 2048;
    /// <summary>Hashes per frame.</summary>
    public int HashesPerFrame { get; init; } = 64 * 1024;
    /// <summary>Largest device state accepted from the primary.</summary>
    public long MaxDeviceStateBytes { get; init; } = 256L << 20;
    /// <summary>The mode the replicas start in: checkpointing (as Remus and COLO's periodic mode): no hashing, the
    /// primary sends every page it dirtied. The backup's VM never runs, so its RAM is the last checkpoint and its own
    /// bitmap is left out. Each sync runs in the mode its <see cref="SyncRequest.Checkpoint"/> names (adaptive mode
    /// switches it at a SYNC entry); this is only where the log starts.</summary>
    public bool Checkpoint { get; init; }
    /// <summary>Replicate mode: the primary sends, of each divergent page, only the sub-blocks of this many bytes
    /// whose hashes differ from the backup's (a second round: the divergent list, the backup's sub-block hashes);
    /// 0 sends whole pages. A power of two, 64..1024. Full syncs (a joining backup) and checkpoints always send whole
    /// pages. Only the primary's setting counts (it tells the backup per sync). 64 with 2-byte hashes
    /// (<see cref="SubBlockHashBytes"/>), by measurement: <c>bench e2e</c> pinned, Redis SET, Plover sent 965 bytes per
    /// request against 1,141 at 128 with 2-byte hashes and 1,437 at 128 with 8-byte ones (the default before);
    /// <c>bench sync</c>'s target point 1.6 MiB per sync against 1.8 and 2.2-2.35 (whole pages 10.2). With 8-byte
    /// hashes 128 sent the fewest bytes (2.2 MiB against 2.5 at 64): the hashes were most of the cost of small blocks.</summary>
    public int SubBlockBytes { get; init; } = DefaultSubBlockBytes;
    public const int DefaultSubBlockBytes = 64;
    /// <summary>Sub-block mode: bytes of each sub-block hash the backup sends (1, 2, 4 or 8: the low bytes of its
    /// CityHash64). Shorter hashes cost fewer bytes but let a differing sub-block pass for equal more often (1 in
    /// 65,536 at 2 bytes); correctness does not rest on them: with each page's sub-blocks the primary sends the page's
    /// root, the CityHash64 of its sub-blocks' full CityHash64s (<see cref="SyncEngine.SubBlockRoot"/>); the backup,
    /// which has its own full hashes, recomputes the root of each page as it stages it (hashing only the sub-blocks
    /// that came), and a page whose root differs is sent again whole (the REPAIR round) before anything is written.
    /// With 8-byte hashes nothing is checked. Only the primary's setting counts (it tells the backup per sync).</summary>
    public int SubBlockHashBytes { get; init; } = DefaultSubBlockHashBytes;
    public const int DefaultSubBlockHashBytes = 2;
    /// <summary>Divergent pages per round of sub-block hashes and sub-blocks (1..<see cref="SyncProtocol.MaxChunkPages"/>):
    /// the backup hashes the next chunk while the primary sends this one's sub-blocks.</summary>
    public int SubBlockChunkPages { get; init; } = 512;
    /// <summary>Backup, replicate mode: compare each divergent page with its own copy before applying it and record
    /// the figures (<see cref="SyncStats.Divergence"/>, <see cref="SyncEngine.Divergence"/>).</summary>
    public bool RecordDivergence { get; init; } = true;
    /// <summary>Primary: resume the guest before the sync is over, once the pages the sync still has to read are copied
    /// (<see cref="PageSnapshot"/>; when: <see cref="ResumePoint"/>), as Remus resumes once dirty pages are in its
    /// buffer; the rest of the sync and the backup's apply run from the copy while the guest executes the next epoch,
    /// whose output stays held. Off: the guest waits for the backup's ack.</summary>
    public bool EarlyResume { get; init; } = true;
    /// <summary>Primary, early resume: when the guest resumes (see <see cref="Sync.ResumePoint"/>). Auto, by <c>bench sync</c>'s
    /// resume phase (10,000 union pages: whole sync 11-12 ms after the compare, 14-15 ms after the bitmaps) and
    /// <c>bench e2e</c> (unions of a few hundred pages: guest pause p50 1.6-1.8 ms after the bitmaps, 2.0-3.1 after
    /// the compare).</summary>
    public ResumePoint ResumePoint { get; init; } = ResumePoint.Auto;
    /// <summary><see cref="ResumePoint.Auto"/>: the largest union copied whole at the bitmaps (8 MiB, about a millisecond).</summary>
    public long SmallUnionPages { get; init; } = 2048;
    /// <summary>Backup: copy the staged pages into guest RAM on every core (the primary waits for this apply).</summary>
    public bool ParallelApply { get; init; } = true;
    /// <summary>Primary, replicate mode: the backup saves its own device state at the cut and sends a hash of each
    /// section; only the sections that differ (and CPUs and virtio devices, see <see cref="DeviceStateSections"/>)
    /// travel and are loaded. Off, or in a full sync or a checkpoint: the whole device state travels.</summary>
    public bool DeviceStateDelta { get; init; } = true;
    /// <summary>Most pages copied for an early resume (the union or the divergent pages; bounds the copy's memory:
    /// 32768 pages = 128 MiB); a larger sync (a full one) keeps the guest stopped until the ack.</summary>
    public long EarlyResumeMaxPages { get; init; } = 32768;
    /// <summary>Replicated drives: most bytes of disk blocks a sync holds at a time (<see cref="DiskBlocks"/>): the union
    /// of dirty blocks (a full sync's: every block of every drive) is read, hashed, compared and sent in chunks of this
    /// many bytes of 4 KiB blocks, and the backup stages at most one chunk of divergent blocks (a sync that sends more
    /// is written as it comes, the backup invalid until the sync completes). Only the primary's setting counts (it
    /// tells the backup in SyncBegin); at most 1 GiB (<see cref="SyncProtocol.MaxDiskChunkBlocks"/>). 64 MiB: a
    /// sync's union is a few blocks (see README, Disks), so only full syncs and rare large unions have more than one.</summary>
    public long DiskChunkBytes { get; init; } = DefaultDiskChunkBytes;
    public const long DefaultDiskChunkBytes = 64L << 20;
    /// <summary>Completed and aborted syncs kept in <see cref="SyncMetrics"/>.</summary>
    public int HistoryLength { get; init; } = 64;
    /// <summary>Where warnings and errors go (aborts, running unprotected). Null: stderr.</summary>
    public Action<string>? Log { get; init; }
    /// <summary>Test hook called on the engine thread at each <see cref="SyncStep"/>; throwing aborts the sync.</summary>
    public Action<SyncRole, SyncStep>? StepHook { get; init; }
}

/// <summary>When the primary's guest resumes in a sync with early resume (<see cref="SyncOptions.ResumePoint"/>).</summary>
public enum ResumePoint
{
    /// <summary>Bitmaps for a union of at most <see cref="SyncOptions.SmallUnionPages"/> pages (its copy costs less than
    /// waiting for the hashes), Compare for a larger one.</summary>
    Auto,
    /// <summary>Once the union is known: the whole union is copied, everything else runs from the copy.</summary>
    Bitmaps,
    /// <summary>Once the hashes are compared: the guest also waits for hashing and the backup's hashes, but only the
    /// divergent pages are copied.</summary>
    Compare,
}

/// <summary>The peer broke the sync protocol (wrong frame, epoch, layout, counts): the sync is aborted.</summary>
public sealed class SyncProtocolException(string message) : Exception(message);

/// <summary>Backup: the primary runs a later cut than this sync's; the sync ends without closing the link.</summary>
public sealed class SyncSupersededException(string message) : Exception(message);
