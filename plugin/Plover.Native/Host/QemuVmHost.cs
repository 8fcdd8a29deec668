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

    /// <summary>save_device_state into the host's buffer, one copy into the engine's, then free_buf.</summary>
    public void SaveDeviceState(ByteBuffer into)
    {
        Check(host.SaveDeviceState(out byte* buf, out nuint length), "save_device_state");
        try
        {
            if (length > int.MaxValue) throw new InvalidOperationException($"device state of {length} bytes is too large");
            if (length > 0) new ReadOnlySpan<byte>(buf, (int)length).CopyTo(into.Append((int)length));
        }
        finally
        {
            if (buf != null) host.FreeBuf(buf);
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
