namespace Plover.Sync;

/// <summary>
/// Replicated drives for tests: bytes in managed arrays with a host-style dirty bitmap per drive. A guest write
/// (<see cref="GuestWrite"/>) marks the blocks it touches; <see cref="Write"/> (the backup's apply) does not, as
/// QEMU's drive_write; <see cref="TakeDirty"/> ORs and clears, as drive_dirty_take. Counts host reads and writes.
/// </summary>
public sealed class SyntheticDisks : IDiskHost
{
    private readonly GuestDrive[] _drives;
    private readonly byte[][] _bytes;
    private readonly ulong[][] _dirty;

    public SyntheticDisks(params (string Name, ulong Size)[] drives)
    {
        _drives = drives.Select(d => new GuestDrive(d.Name, d.Size, GuestRamBlock.PageSize)).ToArray();
        _bytes = _drives.Select(d => new byte[d.Size]).ToArray();
        _dirty = _drives.Select(d => new ulong[d.Words]).ToArray();
    }

    public IReadOnlyList<GuestDrive> Drives => _drives;
    public int Reads { get; private set; }
    public int Writes { get; private set; }

    public Span<byte> Bytes(int drive) => _bytes[drive];

    /// <summary>The guest writes: the bytes change and every block they touch is dirty.</summary>
    public void GuestWrite(int drive, ulong offset, ReadOnlySpan<byte> data)
    {
        data.CopyTo(_bytes[drive].AsSpan((int)offset));
        if (data.Length == 0) return;
        ulong g = _drives[drive].Granularity;
        for (ulong b = offset / g; b <= (offset + (ulong)data.Length - 1) / g; b++) _dirty[drive][b / 64] |= 1UL << (int)(b % 64);
    }

    public long TakeDirty(int drive, Span<ulong> bitmap)
    {
        long n = 0;
        for (int w = 0; w < _dirty[drive].Length; w++)
        {
            n += System.Numerics.BitOperations.PopCount(_dirty[drive][w] & ~bitmap[w]);
            bitmap[w] |= _dirty[drive][w];
            _dirty[drive][w] = 0;
        }
        return n;
    }

    public void Read(int drive, ulong offset, Span<byte> into)
    {
        Reads++;
        _bytes[drive].AsSpan((int)offset, into.Length).CopyTo(into);
    }

    /// <summary>Tests: the write after this many fails (the host dies in the middle of an apply); -1: none.</summary>
    public int FailWriteAfter { get; set; } = -1;

    public void Write(int drive, ulong offset, ReadOnlySpan<byte> data)
    {
        if (FailWriteAfter == 0) throw new IOException($"injected failure writing drive {drive} at {offset}");
        if (FailWriteAfter > 0) FailWriteAfter--;
        Writes++;
        data.CopyTo(_bytes[drive].AsSpan((int)offset));
    }

    /// <summary>The torn mark, kept in this object as QEMU keeps it in a file: a test's restarted engine over the
    /// same disks finds it. MarkTorn counts the marks actually written.</summary>
    public bool Torn { get; set; }
    public int MarksWritten { get; private set; }

    public void MarkTorn()
    {
        if (Torn) return;
        Torn = true;
        MarksWritten++;
    }

    public void ClearTorn() => Torn = false;

    /// <summary>Kept in this object as QEMU keeps it beside the images; counts the records written.</summary>
    public DiskGeneration Generation { get; set; }
    public int GenerationsRecorded { get; private set; }

    public void RecordGeneration(DiskGeneration generation)
    {
        if (generation == Generation) return;
        Generation = generation;
        GenerationsRecorded++;
    }
}
