using Plover.Transport.Ucx;

namespace Plover.Sync;

/// <summary>
/// Backup, UCX page puts: the sync engine's staging buffer registered with UCX, so the primary can put divergent
/// pages straight into it (an RDMA WRITE on RDMA hardware). Registration pins and maps memory in the NIC, which is
/// expensive, so it is kept across syncs and done again only when the buffer moved (it grew, or a full sync gave it
/// back) or the worker changed. <see cref="Drop"/> must be called before the buffer is freed or reallocated.
/// </summary>
internal sealed unsafe class StagingRegion : IDisposable
{
    private UcxMemoryRegion? _region;
    private UcxWorker? _worker;
    private byte[] _key = [];

    /// <summary>How many times a buffer was registered (tests: once per growth, not per sync).</summary>
    public int Registrations { get; private set; }

    /// <summary>The remote key, address and length of buffer (bytes long) registered on worker.</summary>
    public (byte[] Key, ulong Address, ulong Length) Offer(UcxWorker worker, byte* buffer, ulong bytes)
    {
        if (_region is null || _worker != worker || _region.Address != (ulong)buffer || _region.Length != bytes)
        {
            Drop();
            _region = new UcxMemoryRegion(worker, buffer, bytes);
            _worker = worker;
            _key = _region.PackedKey();
            Registrations++;
        }
        return (_key, _region.Address, _region.Length);
    }

    /// <summary>Unregisters (the buffer is about to be freed, or the worker to go).</summary>
    public void Drop()
    {
        _region?.Dispose();
        _region = null;
        _worker = null;
        _key = [];
    }

    public void Dispose() => Drop();
}
