using Plover.Sync;

namespace Plover.Native.Host;

/// <summary>
/// IGuestMemory over ram_blocks: read once at machine_ready (MAIN thread); QEMU keeps the host and dirty pointers
/// valid until shutdown. Block i here is ABI block id i, so RamUpdated can pass the index straight through.
/// </summary>
internal sealed unsafe class QemuGuestMemory : IGuestMemory
{
    private readonly GuestRamBlock[] _blocks;

    public QemuGuestMemory(QemuHost host)
    {
        if (host.TargetPageSize != GuestRamBlock.PageSize)
            throw new InvalidOperationException($"target page size {host.TargetPageSize}; syncvm needs {GuestRamBlock.PageSize}");
        RamBlockInfo[] infos = host.RamBlocks();
        _blocks = new GuestRamBlock[infos.Length];
        for (int i = 0; i < infos.Length; i++)
        {
            RamBlockInfo b = infos[i];
            if (b.Id != i)
                throw new InvalidOperationException($"ram block {i} reports id {b.Id}");
            if (b.Length % GuestRamBlock.PageSize != 0)
                throw new InvalidOperationException($"ram block '{b.Name}' is {b.Length} bytes, not whole pages");
            if (b.HostPtr == null || b.DirtyBitmap == null)
                throw new InvalidOperationException($"ram block '{b.Name}' has no {(b.HostPtr == null ? "host memory" : "dirty bitmap")}");
            _blocks[i] = new GuestRamBlock(b.Name, b.HostPtr, b.Length, b.DirtyBitmap);
        }
    }

    public IReadOnlyList<GuestRamBlock> Blocks => _blocks;
}
