using Plover.Sync;
using Plover.Transport;

namespace Plover.Native.Host;

/// <summary>IVmHost over PloverHostApi. MAIN thread only (QemuHost refuses calls from elsewhere); failures throw.</summary>
internal sealed unsafe class QemuVmHost(QemuHost host) : IVmHost
{
    public void Stop() => Check(host.VmStop(), "vm_stop");

    public void Start() => Check(host.VmStart(), "vm_start");

    public long DirtySync()
    {
        long bits = host.DirtySync();
        if (bits < 0) throw new InvalidOperationException($"dirty_sync failed: {bits}");
        return bits;
    }

    public void DirtyClear() => host.DirtyClear();

    public void DirtyMarkAll() => host.DirtyMarkAll();

    public void RamUpdated(int block, ulong offset, ulong length) => host.RamUpdated(checked((uint)block), offset, length);

    /// <summary>save_device_sections (or save_device_state on a host without it) into the host's buffer, one copy
    /// into the engine's, then free_buf.</summary>
    public void SaveDeviceState(ByteBuffer into, DeviceStateSections sections)
    {
        Check(host.SaveDeviceSections(out byte* buf, out nuint length, out uint* starts, out uint count), "save_device_sections");
        try
        {
            if (length > int.MaxValue) throw new InvalidOperationException($"device state of {length} bytes is too large");
            if (length > 0) new ReadOnlySpan<byte>(buf, (int)length).CopyTo(into.Append((int)length));
            for (uint i = 0; i < count; i++) sections.AddStart(checked((int)starts[i]));
        }
        finally
        {
            if (buf != null) host.FreeBuf(buf);
            if (starts != null) host.FreeBuf(starts);
        }
    }

    public void LoadDeviceState(ReadOnlySpan<byte> state)
    {
        fixed (byte* p = state)
            Check(host.LoadDeviceState(p, (nuint)state.Length), "load_device_state");
    }

    private static void Check(int rc, string call)
    {
        if (rc < 0) throw new InvalidOperationException($"{call} failed: {rc}");
    }
}
