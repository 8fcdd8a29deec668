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

    /// <summary>Hash all RAM and every device state section (saveDevices runs on the main thread) at the engine's next
    /// sync point.</summary>
    public void Arm(SyncEngine engine, IGuestMemory memory, PageHasher hasher, Func<Device[]> saveDevices)
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
