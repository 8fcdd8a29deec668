namespace Plover.Sync;

/// <summary>
/// The replicated drives offered by the host (QEMU: drives, drive_dirty_take, drive_read, drive_write of ABI 1.3).
/// Every method is MAIN-thread only, like <see cref="IVmHost"/>; errors are thrown. The drive list is fixed once the
/// machine is ready.
/// </summary>
public interface IDiskHost
{
    IReadOnlyList<GuestDrive> Drives { get; }
    /// <summary>VM stopped: ORs the drive's blocks written since the last take into bitmap (at least
    /// <see cref="GuestDrive.Words"/> words) and clears them in the host; returns the blocks newly set.</summary>
    long TakeDirty(int drive, Span<ulong> bitmap);
    /// <summary>Reads into.Length bytes at offset (within the drive).</summary>
    void Read(int drive, ulong offset, Span<byte> into);
    /// <summary>VM stopped: writes data at offset; not the guest's write, so not marked dirty.</summary>
    void Write(int drive, ulong offset, ReadOnlySpan<byte> data);

    /// <summary>Backup, before a sync's first <see cref="Write"/>: marks the drives' images torn, a mark that outlives
    /// the process (QEMU: <see cref="TornImageMarks"/>). No-op when marked; throws when it cannot mark.</summary>
    void MarkTorn();
    /// <summary>A sync completed on the backup: its drives hold the primary's blocks at the cut; the mark goes.</summary>
    void ClearTorn();
    /// <summary>The images carry the mark (found at start: a sync was writing them when the node stopped).</summary>
    bool Torn { get; }

    /// <summary>How new the images are (kept across a full outage; any thread).</summary>
    DiskGeneration Generation { get; }
    /// <summary>Records the images' generation (no-op when unchanged; durable before it returns; any thread).</summary>
    void RecordGeneration(DiskGeneration generation);
}
