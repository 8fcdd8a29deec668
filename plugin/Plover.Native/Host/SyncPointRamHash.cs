using System.Diagnostics;
using Plover.Hashing;
using Plover.Sync;

namespace Plover.Native.Host;

/// <summary>
/// The full-RAM check of replication: at a sync point (both VMs stopped in the state they now share) hash every
/// page of every RAM block. Armed from the admin socket on both replicas; comparing the two results (digest first,
/// page hashes to name the differing pages) proves the memories identical or says where they are not.
/// </summary>
internal sealed unsafe class SyncPointRamHash
{
    public sealed record Block(string Name, ulong[] Hashes, ulong Digest);

    /// <summary>A device state section: its name and the CityHash64 of its bytes; a small section's bytes too (Data,
    /// for telling which fields differ, e.g. the RTC's clock registers).</summary>
    public sealed record Device(string Name, ulong Hash, int Bytes, bool AlwaysSent, byte[]? Data = null);

    /// <summary>Sections up to this size keep their bytes in a result.</summary>
    public const int KeptSectionBytes = 1024;

    /// <summary>The sections of a device state saved through vm (main thread, VM stopped).</summary>
    public static Device[] SaveDevices(IVmHost vm)
    {
        using var state = new Plover.Transport.ByteBuffer(1 << 20);
        var sections = new DeviceStateSections();
        vm.SaveDeviceState(state, sections);
        if (!sections.Parse(state.Data, out string? error)) return [new Device($"(no sections: {error})", CityHash.Hash64(state.Data), state.Count, true)];
        var devices = new Device[sections.Count];
        for (int i = 0; i < devices.Length; i++)
        {
            ref readonly var s = ref sections[i];
            byte[]? data = s.Length <= KeptSectionBytes ? state.Data.Slice(s.Offset, s.Length).ToArray() : null;
            devices[i] = new Device(sections.Name(i, state.Data), s.Hash, s.Length, s.AlwaysSend, data);
        }
        return devices;
    }

    public sealed record Result(ulong Epoch, long LogIndex, ulong InputDigest, ulong Digest, double HashMs, Block[] Blocks, Device[] Devices);

    private readonly Lock _lock = new();
    private Result? _last;
    private bool _armed;

    public Result? Last { get { lock (_lock) return _last; } }
    public bool Armed { get { lock (_lock) return _armed; } }

    /// <summary>Every 4 KiB block of every replicated drive, as blocks named "drive:NAME" (read on the main thread
    /// through onMain in 4 MiB pieces, hashed here; a short last block zero-padded, as syncs hash it).</summary>
    public static Block[] HashDrives(IDiskHost disks, PageHasher hasher, Action<Action> onMain)
    {
        var result = new Block[disks.Drives.Count];
        var buffer = new byte[4 << 20];
        for (int d = 0; d < result.Length; d++)
        {
            GuestDrive drive = disks.Drives[d];
            var hashes = new ulong[drive.Blocks];
            for (ulong offset = 0; offset < drive.Size; offset += (ulong)buffer.Length)
            {
                int n = (int)Math.Min((ulong)buffer.Length, drive.Size - offset);
                Array.Clear(buffer);
                int index = d;
                ulong at = offset;
                onMain(() => disks.Read(index, at, buffer.AsSpan(0, n)));
                fixed (byte* b = buffer)
                fixed (ulong* h = hashes)
                    hasher.HashPages(b, (ulong)(n + GuestRamBlock.PageSize - 1) / GuestRamBlock.PageSize, null, h + offset / GuestRamBlock.PageSize);
            }
            ulong digest;
            fixed (ulong* h = hashes) digest = CityHash.Hash64((byte*)h, (nuint)(hashes.Length * sizeof(ulong)));
            result[d] = new Block("drive:" + drive.Name, hashes, digest);
        }
        return result;
    }

    /// <summary>Hash all RAM, the replicated drives (hashDrives, if any) and every device state section (saveDevices
    /// runs on the main thread) at the engine's next sync point.</summary>
    public void Arm(SyncEngine engine, IGuestMemory memory, PageHasher hasher, Func<Device[]> saveDevices, Func<Block[]>? hashDrives = null)
    {
        lock (_lock) _armed = true;
        engine.AtNextSyncPoint(request =>
        {
            long start = Stopwatch.GetTimestamp();
            var blocks = new Block[memory.Blocks.Count];
            var digests = new ulong[blocks.Length];
            for (int i = 0; i < blocks.Length; i++)
            {
                GuestRamBlock b = memory.Blocks[i];
                var hashes = new ulong[b.Pages];
                fixed (ulong* h = hashes)
                {
                    if (b.Pages > 0) hasher.HashPages(b.Host, b.Pages, null, h);
                    digests[i] = CityHash.Hash64((byte*)h, (nuint)(hashes.Length * sizeof(ulong)));
                }
                blocks[i] = new Block(b.Name, hashes, digests[i]);
            }
            if (hashDrives is not null)
            {
                try { blocks = [.. blocks, .. hashDrives()]; }
                catch (Exception e) { blocks = [.. blocks, new Block($"drive:(not read: {e.Message})", [], 0)]; }
                digests = blocks.Select(b => b.Digest).ToArray();
            }
            ulong digest;
            fixed (ulong* d = digests) digest = CityHash.Hash64((byte*)d, (nuint)(digests.Length * sizeof(ulong)));
            Device[] devices;
            try { devices = saveDevices(); }
            catch (Exception e) { devices = [new Device($"(device state not saved: {e.Message})", 0, 0, true)]; }
            var result = new Result(request.Epoch, request.LogIndex, request.InputDigest, digest,
                Stopwatch.GetElapsedTime(start).TotalMilliseconds, blocks, devices);
            lock (_lock)
            {
                _last = result;
                _armed = false;
            }
        });
    }
}
