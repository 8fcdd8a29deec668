using Plover.Wire;

namespace Plover.Sync;

/// <summary>Bytes on the wire by kind, both directions, frame header and MAC included.</summary>
public struct SyncWireBytes
{
    public long Bitmaps;
    public long Hashes;
    public long Pages;
    public long DeviceState;
    public long Control;
    public readonly long Total => Bitmaps + Hashes + Pages + DeviceState + Control;

    public void Add(in SyncWireBytes o)
    {
        Bitmaps += o.Bitmaps; Hashes += o.Hashes; Pages += o.Pages; DeviceState += o.DeviceState; Control += o.Control;
    }
}

/// <summary>Where the pause of one sync went, in microseconds, as seen by this side.</summary>
public struct SyncPause
{
    /// <summary>Main-thread stop action: vm_stop, output cut, dirty sync (and mark-all).</summary>
    public double Stop;
    /// <summary>Gathering, encoding and exchanging the bitmaps; the union.</summary>
    public double Bitmap;
    /// <summary>Hashing the union; primary: plus waiting for the backup's hashes; backup: plus sending them.</summary>
    public double Hash;
    /// <summary>Primary: comparing hashes into the divergent list.</summary>
    public double Compare;
    /// <summary>Sub-block mode: the divergent list and the sub-block hashes of every chunk (primary: from sending the
    /// list until the last chunk's masks; backup: from receiving the list until the last chunk's hashes are sent),
    /// the sub-blocks themselves excluded (those are <see cref="Transfer"/>).</summary>
    public double SubBlocks;
    /// <summary>Divergent pages on the wire (backup: until the first device state frame arrives).</summary>
    public double Transfer;
    /// <summary>Waiting for this side's device save (posted at the stop, see <see cref="DeviceSave"/>) where its
    /// bytes are needed, and moving the device state.</summary>
    public double DeviceState;
    /// <summary>Backup: copying staged pages into RAM and loading devices. Primary: waiting for the ack.</summary>
    public double Apply;
    /// <summary>Main-thread resume action: dirty clear, vm_start, output release or discard.</summary>
    public double Resume;
    /// <summary>Primary, early resume: copying the union's pages before the guest resumed.</summary>
    public double Snapshot;
    /// <summary>Waiting for the host's main thread to take up this sync's actions (stop, resume, apply), summed:
    /// the hand-off cost, apart from the work the actions do.</summary>
    public double MainWait;
    /// <summary>Backup: loading the device state into the devices (on the main thread; part of <see cref="Apply"/>).</summary>
    public double DeviceLoad;
    /// <summary>Saving this side's device state at the cut, on the main thread, overlapping the bitmaps and hashes
    /// (primary: always; backup: with the device state delta).</summary>
    public double DeviceSave;
    /// <summary>Replicated drives: reading the union's blocks at the cut (main thread, VM stopped; part of <see cref="Bitmap"/>).</summary>
    public double DiskRead;
    /// <summary>Replicated drives: every disk step of this side, summed (the disk bitmaps and the union's read, the
    /// block hashes and, on the primary, waiting for the backup's, the divergent blocks on the wire, the backup's write
    /// of them); part of the phases above (<see cref="Bitmap"/>, <see cref="Hash"/>, <see cref="Transfer"/>,
    /// <see cref="Apply"/>).</summary>
    public double Disk;
    /// <summary>How long this side's guest was stopped: from the replica's vm_stop at the SYNC entry (or the engine's
    /// stop request) to vm_start, the pause its clients feel. At least <see cref="Total"/> unless the primary resumed
    /// early.</summary>
    public double Guest;
    /// <summary>Stop request to the end of the sync (ack received, output released).</summary>
    public double Total;
}

/// <summary>Accounting of one sync on one side (immutable once published in <see cref="SyncMetrics"/>).</summary>
public sealed class SyncStats
{
    public SyncRole Role { get; init; }
    public ulong Epoch { get; init; }
    public long LogIndex { get; init; }
    public bool FullSync { get; internal set; }
    /// <summary>A joining backup's first sync (it took the cut from the primary's SyncBegin).</summary>
    public bool Joined { get; init; }
    /// <summary>The replica's input digest at the cut (see <see cref="SyncRequest.InputDigest"/>); on a backup whose
    /// own digest differed from the primary's (<see cref="InputsDiverged"/>), the primary's.</summary>
    public ulong InputDigest { get; internal set; }
    /// <summary>Backup: the primary's input digest at the cut was not this replica's (the two VMs did not get the same
    /// inputs): the sync compared every page, and the replica takes the primary's digest from here on.</summary>
    public bool InputsDiverged { get; internal set; }
    /// <summary>A checkpoint (see <see cref="SyncRequest.Checkpoint"/>): every page the primary dirtied was sent.</summary>
    public bool Checkpoint { get; init; }
    /// <summary>The mode the replicas continue in after this sync (differs from <see cref="Checkpoint"/> at an
    /// adaptive switch).</summary>
    public bool NextCheckpoint { get; init; }
    /// <summary>Primary: the guest resumed before the backup's ack, from a copy of the pages the sync still reads
    /// (<see cref="SyncOptions.EarlyResume"/>, <see cref="SyncOptions.ResumePoint"/>).</summary>
    public bool ResumedEarly { get; internal set; }
    /// <summary>Primary, early resume: pages copied before the guest resumed (the union, or the divergent pages).</summary>
    public ulong SnapshotPages { get; internal set; }
    public DateTime StartedUtc { get; init; }
    public SyncOutcome Outcome { get; internal set; }
    public string? Error { get; internal set; }
    /// <summary>Pages this side had dirty, pages the peer had dirty, pages in their union.</summary>
    public ulong LocalDirtyPages { get; internal set; }
    public ulong RemoteDirtyPages { get; internal set; }
    public ulong UnionPages { get; internal set; }
    /// <summary>Union pages whose hashes matched (not sent) and that were sent.</summary>
    public ulong IdenticalPages { get; internal set; }
    public ulong DivergentPages { get; internal set; }
    /// <summary>Replicated drives: 4 KiB blocks in the union of both sides' dirty blocks, and those sent (their
    /// hashes differed; all of them in checkpoint mode).</summary>
    public ulong DiskUnionBlocks { get; internal set; }
    public ulong DiskDivergentBlocks { get; internal set; }
    /// <summary>Chunks the disk union was compared in (<see cref="SyncOptions.DiskChunkBytes"/>; 0: an empty union).</summary>
    public ulong DiskChunks { get; internal set; }
    /// <summary>Replicated drives: the blocks this side's guest wrote since the last completed sync (what a checkpoint
    /// of the primary sends), and the union blocks whose hashes matched (not sent; 0 unless the sync completed).</summary>
    public ulong DiskLocalDirtyBlocks { get; internal set; }
    public ulong DiskIdenticalBlocks => Outcome == SyncOutcome.Completed && DiskUnionBlocks >= DiskDivergentBlocks ? DiskUnionBlocks - DiskDivergentBlocks : 0;
    /// <summary>Replicated drives: the disk frames of this sync on the wire, both directions, whole frames (disk
    /// bitmaps, block hashes, blocks); also counted in <see cref="Wire"/> by kind.</summary>
    public long DiskWireBytes { get; internal set; }
    /// <summary>Device state bytes sent (primary) or received (backup): all of it, or the sections that differ.</summary>
    public ulong DeviceStateBytes { get; internal set; }
    /// <summary>Primary: the whole device state as saved at the cut (what a checkpoint sends).</summary>
    public ulong DeviceStateSavedBytes { get; internal set; }
    /// <summary>Device state sections the primary saved (0: unknown, sent whole) and those that travelled (all, or
    /// with <see cref="SyncOptions.DeviceStateDelta"/> the ones that differ and the CPUs and virtio devices).</summary>
    public uint DeviceSections { get; internal set; }
    public uint DeviceSectionsSent { get; internal set; }
    /// <summary>Encoded bitmap payloads (frame tails) sent and received, for comparing encodings.</summary>
    public long LocalBitmapBytes { get; internal set; }
    public long RemoteBitmapBytes { get; internal set; }
    public BitmapEncoding LocalBitmapEncoding { get; internal set; }
    public BitmapEncoding RemoteBitmapEncoding { get; internal set; }
    /// <summary>Output frames of this epoch let out (primary) or dropped (backup) when the sync completed, and the
    /// wall-clock time just before that happened (UTC; for checking captures against the sync log).</summary>
    public long OutputFrames { get; internal set; }
    public DateTime? OutputUtc { get; internal set; }
    /// <summary>The sub-block size this sync sent divergent pages in (0: whole pages).</summary>
    public int SubBlockBytes { get; internal set; }
    /// <summary>Sub-blocks sent (primary) or received (backup) in sub-block mode.</summary>
    public ulong SubBlocks { get; internal set; }
    /// <summary>Sub-block mode: the length of the backup's sub-block hashes in this sync (1, 2, 4 or 8 bytes).</summary>
    public int SubBlockHashBytes { get; internal set; }
    /// <summary>Sub-block mode: divergent pages sent again whole because the page written from their sub-blocks did not
    /// hash to the primary's (a shortened sub-block hash collided; the REPAIR round).</summary>
    public ulong RepairedPages { get; internal set; }
    /// <summary>Page data bytes sent or received (whole pages, or the sub-blocks), without numbering and masks.</summary>
    public ulong PageDataBytes { get; internal set; }
    /// <summary>UCX page puts. Primary: ucp_put calls (a run of adjacent pages, or one batch of sub-blocks, is one).</summary>
    public ulong Puts { get; internal set; }
    /// <summary>UCX page puts: page data bytes put (primary) or checked in staging against the primary's hashes (backup);
    /// they are in <see cref="PageDataBytes"/> but not in <see cref="Wire"/>, which counts frames only.</summary>
    public ulong PutBytes { get; internal set; }
    /// <summary>Backup, replicate mode: what the divergent pages looked like against the backup's own copies.</summary>
    public DivergenceSample Divergence;
    public SyncWireBytes Wire;
    public SyncPause Pause;
    /// <summary>How the epoch reached the cut (see <see cref="SyncLead"/>).</summary>
    public SyncLead Lead { get; init; } = SyncLead.None;

    public override string ToString() =>
        $"sync e{Epoch} {Role} {Outcome}{(Error is null ? "" : $" ({Error})")}: union {UnionPages} pages, {IdenticalPages} identical, " +
        $"{DivergentPages} divergent{(SubBlockBytes > 0 ? $" ({SubBlocks} sub-blocks of {SubBlockBytes} B, {SubBlockHashBytes}-byte hashes{(RepairedPages > 0 ? $", {RepairedPages} repaired" : "")})" : "")}{(PutBytes > 0 ? $", {PutBytes} B put one-sided ({Puts} puts)" : "")}" +
        $"{(DiskUnionBlocks > 0 ? $"; disk: {DiskLocalDirtyBlocks} dirty, union {DiskUnionBlocks} blocks, {DiskDivergentBlocks} divergent, {DiskWireBytes} B, {Pause.Disk:F0} us" : "")}; wire {Wire.Total} B (bitmaps {Wire.Bitmaps}, hashes {Wire.Hashes}, pages {Wire.Pages}, " +
        $"device {Wire.DeviceState}, control {Wire.Control}); pause {Pause.Total:F0} us (stop {Pause.Stop:F0}, bitmap {Pause.Bitmap:F0}, " +
        $"hash {Pause.Hash:F0}, compare {Pause.Compare:F0}, sub-blocks {Pause.SubBlocks:F0}, transfer {Pause.Transfer:F0}, device {Pause.DeviceState:F0}, " +
        $"apply {Pause.Apply:F0}, resume {Pause.Resume:F0}, snapshot {Pause.Snapshot:F0}; guest stopped {Pause.Guest:F0} us{(ResumedEarly ? ", resumed early" : "")})";
}
