using Plover.Sync;

namespace Plover.Native.Host;

/// <summary>IDiskHost over the drive calls of ABI 1.3 (and 1.4's drive_file for the torn-image marks). MAIN thread
/// only (QemuHost refuses calls from elsewhere); failures throw. The drive list is read once (it is fixed from
/// machine_ready on). marks: null for a reader (the admin's sync-point check), which never writes.</summary>
internal sealed class QemuDiskHost : IDiskHost
{
    private readonly QemuHost _host;
    private readonly GuestDrive[] _drives;
    private readonly TornImageMarks? _marks;
    private readonly DiskGenerationFiles? _generation;

    public QemuDiskHost(QemuHost host, int? node)
    {
        _host = host;
        DriveInfo[] drives = host.Drives();
        _drives = drives.Select(d => new GuestDrive(d.Name, d.Size, d.Granularity)).ToArray();
        if (node is { } id)
        {
            var images = drives.Select(d => (d.Name, host.DriveFile(d.Id))).ToArray();
            _marks = new TornImageMarks(images, id);
            _generation = new DiskGenerationFiles(images.Select(i => i.Item2));
        }
    }

    public IReadOnlyList<GuestDrive> Drives => _drives;
    public TornImageMarks? Marks => _marks;

    public long TakeDirty(int drive, Span<ulong> bitmap)
    {
        long n = _host.DriveDirtyTake(checked((uint)drive), bitmap);
        return n >= 0 ? n : throw new InvalidOperationException($"drive_dirty_take({drive}) failed: {n}");
    }

    public void Read(int drive, ulong offset, Span<byte> into) =>
        Check(_host.DriveRead(checked((uint)drive), offset, into), "drive_read", drive);

    public void Write(int drive, ulong offset, ReadOnlySpan<byte> data) =>
        Check(_host.DriveWrite(checked((uint)drive), offset, data), "drive_write", drive);

    public void MarkTorn() => (_marks ?? throw new InvalidOperationException("a drive reader cannot write")).Mark();
    public void ClearTorn() => _marks?.Clear();
    public bool Torn => _marks?.Marked ?? false;
    public DiskGeneration Generation => _generation?.Current ?? default;
    public void RecordGeneration(DiskGeneration generation) =>
        (_generation ?? throw new InvalidOperationException("a drive reader cannot write")).Record(generation);

    private static void Check(int rc, string call, int drive)
    {
        if (rc < 0) throw new InvalidOperationException($"{call}({drive}) failed: {rc}");
    }
}
