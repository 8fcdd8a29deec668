using System.Buffers;
using System.Text;
using Plover.Interop;

namespace Plover.Native.Host;

/// <summary>A RAM block as the host describes it; the pointers stay valid from machine_ready until shutdown.</summary>
internal sealed unsafe class RamBlockInfo(uint id, string name, nint host, ulong ramAddr, ulong length,
    ulong hostPageSize, nint dirty)
{
    public uint Id { get; } = id;
    public string Name { get; } = name;
    public nint Host { get; } = host;
    public ulong RamAddr { get; } = ramAddr;
    public ulong Length { get; } = length;
    public ulong HostPageSize { get; } = hostPageSize;
    public nint Dirty { get; } = dirty;
    public byte* HostPtr => (byte*)Host;
    public ulong* DirtyBitmap => (ulong*)Dirty;
}

internal sealed record NicInfo(uint Id, string FilterId, string NetdevId, string NicName, byte[] Mac, uint VnetHdrLen)
{
    public string MacText => string.Join(":", Mac.Select(b => b.ToString("x2")));
}

/// <summary>A replicated drive (ABI 1.3) as the host describes it: its dirty bitmap has one bit per
/// <paramref name="Granularity"/> bytes, <paramref name="Blocks"/> bits in all.</summary>
internal sealed record DriveInfo(uint Id, string Name, string Device, ulong Size, ulong Granularity, ulong Blocks)
{
    public int BitmapWords => (int)((Blocks + 63) / 64);
}

/// <summary>
/// The QEMU side of the ABI: the only code that calls through PloverHostApi. MAIN calls check that they run on
/// the thread that called plover_qemu_init (QEMU's main thread), so a library thread that calls one by mistake
/// gets an exception instead of corrupting QEMU. A missing host function is an InvalidOperationException.
/// </summary>
internal sealed unsafe class QemuHost
{
    private readonly PloverHostApi _api; // a copy: the host's struct may be larger (newer minor) than ours
    private readonly int _mainThread;

    public QemuHost(PloverHostApi* api)
    {
        _api = *api;
        _mainThread = Environment.CurrentManagedThreadId;
        QemuVersion = NativeText.Read(api->qemu_version) ?? "";
        ObjectId = NativeText.Read(api->object_id) ?? "";
        Role = NativeText.Read(api->role);
        ConfigPath = NativeText.Read(api->config);
        Node = NativeText.Read(api->node);
    }

    public ushort AbiMajor => _api.abi_major;
    public ushort AbiMinor => _api.abi_minor;
    public uint TargetPageSize => _api.target_page_size;
    public string QemuVersion { get; }
    public string ObjectId { get; }
    public string? Role { get; }
    public string? ConfigPath { get; }
    public string? Node { get; }

    public bool OnMainThread => Environment.CurrentManagedThreadId == _mainThread;

    // ---- ANY thread ----

    public void Log(int level, string message)
    {
        var log = _api.log;
        if (log == null)
        {
            Console.Error.WriteLine($"plover: {message}");
            return;
        }
        int max = Encoding.UTF8.GetMaxByteCount(message.Length) + 1;
        byte[]? rented = max > 1024 ? ArrayPool<byte>.Shared.Rent(max) : null;
        Span<byte> buf = rented ?? stackalloc byte[1024];
        int n = Encoding.UTF8.GetBytes(message, buf);
        buf[n] = 0;
        fixed (byte* p = buf)
            log(level, p);
        if (rented != null)
            ArrayPool<byte>.Shared.Return(rented);
    }

    public void Error(string message) => Log(PloverAbi.LogError, message);
    public void Warn(string message) => Log(PloverAbi.LogWarn, message);
    public void Info(string message) => Log(PloverAbi.LogInfo, message);
    public void Debug(string message) => Log(PloverAbi.LogDebug, message);

    /// <summary>Reports why and ends QEMU at once (_exit: no exit handlers race the main loop). Never returns.</summary>
    public void Fence(string why)
    {
        Need(_api.fence, "fence", main: false);
        byte[] text = Encoding.UTF8.GetBytes(why + "\0");
        fixed (byte* p = text)
            _api.fence(p);
        Environment.FailFast(why);   // not reached: the host's fence does not return
    }

    public int ScheduleMain(delegate* unmanaged[Cdecl]<void*, void> fn, void* opaque)
    {
        Need(_api.schedule_main, "schedule_main", main: false);
        return _api.schedule_main(fn, opaque);
    }

    // ---- MAIN thread only ----

    public string? AccelName()
    {
        Need(_api.accel_name, "accel_name");
        return NativeText.Read(_api.accel_name());
    }

    public bool VmIsRunning()
    {
        Need(_api.vm_is_running, "vm_is_running");
        return _api.vm_is_running() != 0;
    }

    public int VmStop()
    {
        Need(_api.vm_stop, "vm_stop");
        return _api.vm_stop();
    }

    public int VmStart()
    {
        Need(_api.vm_start, "vm_start");
        return _api.vm_start();
    }

    public RamBlockInfo[] RamBlocks()
    {
        PloverRamBlock* blocks = null;
        uint count = 0;
        Need(_api.ram_blocks, "ram_blocks");
        int rc = _api.ram_blocks(&blocks, &count);
        if (rc < 0)
            throw new InvalidOperationException($"ram_blocks failed: {rc}");
        var result = new RamBlockInfo[count];
        for (uint i = 0; i < count; i++)
        {
            PloverRamBlock* b = &blocks[i];
            result[i] = new RamBlockInfo(b->id, NativeText.Read(b->name) ?? "", (nint)b->host, b->ram_addr, b->length,
                b->host_page_size, (nint)b->dirty);
        }
        return result;
    }

    public int DirtyLogStart()
    {
        Need(_api.dirty_log_start, "dirty_log_start");
        return _api.dirty_log_start();
    }

    public void DirtyLogStop()
    {
        Need(_api.dirty_log_stop, "dirty_log_stop");
        _api.dirty_log_stop();
    }

    public long DirtySync()
    {
        Need(_api.dirty_sync, "dirty_sync");
        return _api.dirty_sync();
    }

    public void DirtyClear()
    {
        Need(_api.dirty_clear, "dirty_clear");
        _api.dirty_clear();
    }

    public void DirtyMarkAll()
    {
        Need(_api.dirty_mark_all, "dirty_mark_all");
        _api.dirty_mark_all();
    }

    public void RamUpdated(uint block, ulong offset, ulong length)
    {
        Need(_api.ram_updated, "ram_updated");
        _api.ram_updated(block, offset, length);
    }

    /// <summary>Saves the device state; the buffer belongs to the host: give it back with FreeBuf.</summary>
    public int SaveDeviceState(out byte* buf, out nuint length)
    {
        byte* b = null;
        nuint n = 0;
        Need(_api.save_device_state, "save_device_state");
        int rc = _api.save_device_state(&b, &n);
        buf = b;
        length = n;
        return rc;
    }

    /// <summary>Saves the device state and where its sections start (both buffers belong to the host: give them back
    /// with FreeBuf); a host without save_device_sections saves the state alone (count 0).</summary>
    public int SaveDeviceSections(out byte* buf, out nuint length, out uint* starts, out uint count)
    {
        byte* b = null;
        nuint n = 0;
        uint* s = null;
        uint c = 0;
        int rc;
        if (_api.save_device_sections != null)
        {
            Need(_api.save_device_sections, "save_device_sections");
            rc = _api.save_device_sections(&b, &n, &s, &c);
        }
        else rc = SaveDeviceState(out b, out n);
        buf = b;
        length = n;
        starts = s;
        count = c;
        return rc;
    }

    public int LoadDeviceState(byte* buf, nuint length)
    {
        Need(_api.load_device_state, "load_device_state");
        return _api.load_device_state(buf, length);
    }

    public void FreeBuf(void* buf)
    {
        Need(_api.free_buf, "free_buf");
        _api.free_buf(buf);
    }

    public NicInfo[] Nics()
    {
        PloverNic* nics = null;
        uint count = 0;
        Need(_api.nics, "nics");
        int rc = _api.nics(&nics, &count);
        if (rc < 0)
            throw new InvalidOperationException($"nics failed: {rc}");
        var result = new NicInfo[count];
        for (uint i = 0; i < count; i++)
        {
            PloverNic* n = &nics[i];
            result[i] = new NicInfo(n->id, NativeText.Read(n->filter_id) ?? "", NativeText.Read(n->netdev_id) ?? "",
                NativeText.Read(n->nic_name) ?? "", new ReadOnlySpan<byte>(n->mac, 6).ToArray(), n->vnet_hdr_len);
        }
        return result;
    }

    public int NetInject(uint nic, uint flags, ReadOnlySpan<byte> frame)
    {
        Need(_api.net_inject, "net_inject");
        var inject = _api.net_inject;
        fixed (byte* p = frame)
            return inject(nic, flags, p, (nuint)frame.Length);
    }

    public ulong NetOutCut(uint nic)
    {
        Need(_api.net_out_cut, "net_out_cut");
        return _api.net_out_cut(nic);
    }

    public long NetOutRelease(uint nic, ulong uptoEpoch)
    {
        Need(_api.net_out_release, "net_out_release");
        return _api.net_out_release(nic, uptoEpoch);
    }

    public long NetOutDiscard(uint nic, ulong uptoEpoch)
    {
        Need(_api.net_out_discard, "net_out_discard");
        return _api.net_out_discard(nic, uptoEpoch);
    }

    public int NetOutMode(uint nic, int mode)
    {
        Need(_api.net_out_mode, "net_out_mode");
        return _api.net_out_mode(nic, mode);
    }

    public int NetAnnounce()
    {
        Need(_api.net_announce, "net_announce");
        return _api.net_announce();
    }

    public int[] VcpuThreadIds()
    {
        Need(_api.vcpu_thread_ids, "vcpu_thread_ids");
        var fn = _api.vcpu_thread_ids;
        var tids = new int[1024];
        uint count = 0;
        int rc;
        fixed (int* p = tids)
            rc = fn(p, (uint)tids.Length, &count);
        if (rc < 0)
            throw new InvalidOperationException($"vcpu_thread_ids failed: {rc}");
        return tids.AsSpan(0, (int)Math.Min(count, (uint)tids.Length)).ToArray();
    }

    /// <summary>Emits a QMP event (ABI 1.2); false if this host has no event function.</summary>
    public bool Event(PloverEvent* ev)
    {
        if (_api.@event == null) return false;
        Need(_api.@event, "event");
        _api.@event(ev);
        return true;
    }

    // ---- replicated drives (ABI 1.3), MAIN thread only ----

    public DriveInfo[] Drives()
    {
        PloverDrive* drives = null;
        uint count = 0;
        if (_api.drives == null && OnMainThread) return [];   // a host without drive calls replicates none
        Need(_api.drives, "drives");
        int rc = _api.drives(&drives, &count);
        if (rc < 0)
            throw new InvalidOperationException($"drives failed: {rc}");
        var result = new DriveInfo[count];
        for (uint i = 0; i < count; i++)
        {
            PloverDrive* d = &drives[i];
            result[i] = new DriveInfo(d->id, NativeText.Read(d->name) ?? "", NativeText.Read(d->device) ?? "",
                d->size, d->granularity, d->blocks);
        }
        return result;
    }

    /// <summary>VM stopped: ORs the drive's blocks written since the last take into bitmap and clears them in
    /// QEMU; the number of blocks set, or -errno.</summary>
    public long DriveDirtyTake(uint drive, Span<ulong> bitmap)
    {
        Need(_api.drive_dirty_take, "drive_dirty_take");
        var take = _api.drive_dirty_take;
        fixed (ulong* p = bitmap)
            return take(drive, p, (ulong)bitmap.Length);
    }

    /// <summary>Reads buffer.Length bytes at offset through QEMU's block layer (synchronous); 0 or -errno.</summary>
    public int DriveRead(uint drive, ulong offset, Span<byte> buffer)
    {
        Need(_api.drive_read, "drive_read");
        var read = _api.drive_read;
        fixed (byte* p = buffer)
            return read(drive, offset, p, (ulong)buffer.Length);
    }

    /// <summary>VM stopped: writes data at offset, not marked dirty (it is not the guest's write); 0 or -errno.</summary>
    public int DriveWrite(uint drive, ulong offset, ReadOnlySpan<byte> data)
    {
        Need(_api.drive_write, "drive_write");
        var write = _api.drive_write;
        fixed (byte* p = data)
            return write(drive, offset, p, (ulong)data.Length);
    }

    /// <summary>The drive's image file on this host (ABI 1.4); "" when it is not a local file.</summary>
    public string DriveFile(uint drive)
    {
        Need(_api.drive_file, "drive_file");
        return NativeText.Read(_api.drive_file(drive)) ?? "";
    }

    private void Need(void* fn, string name, bool main = true)
    {
        if (main && !OnMainThread)
            throw new InvalidOperationException($"host call {name} made off QEMU's main thread (library bug)");
        if (fn == null)
            throw new InvalidOperationException($"the host does not provide {name}");
    }
}
