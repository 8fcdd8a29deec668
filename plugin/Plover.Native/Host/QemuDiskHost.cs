using Plover.Sync;

namespace Plover.Native.Host;

/// <summary>IDiskHost over the drive calls of ABI 1.3. MAIN thread only (QemuHost refuses calls from elsewhere);
/// failures throw. The drive list is read once (it is fixed from machine_ready on).</summary>
internal sealed class QemuDiskHost(QemuHost host) : IDiskHost
{
    private readonly GuestDrive[] _drives =
        host.Drives().Select(d => new GuestDrive(d.Name, d.Size, d.Granularity)).ToArray();

    public IReadOnlyList<GuestDrive> Drives => _drives;

    public long TakeDirty(int drive, Span<ulong> bitmap)
    {
        long n = host.DriveDirtyTake(checked((uint)drive), bitmap);
        return n >= 0 ? n : throw new InvalidOperationException($"drive_dirty_take({drive}) failed: {n}");
    }

    public void Read(int drive, ulong offset, Span<byte> into) =>
        Check(host.DriveRead(checked((uint)drive), offset, into), "drive_read", drive);

    public void Write(int drive, ulong offset, ReadOnlySpan<byte> data) =>
        Check(host.DriveWrite(checked((uint)drive), offset, data), "drive_write", drive);

    private static void Check(int rc, string call, int drive)
    {
        if (rc < 0) throw new InvalidOperationException($"{call}({drive}) failed: {rc}");
    }
}
