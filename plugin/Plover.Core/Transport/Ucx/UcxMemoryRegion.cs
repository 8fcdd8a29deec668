using static Plover.Transport.Ucx.UcxNative;

namespace Plover.Transport.Ucx;

/// <summary>
/// Memory of this process registered with UCX (ucp_mem_map) so that a peer may write into it one-sided
/// (<see cref="UcxRemoteWriter"/>): on RDMA hardware the NIC places the data with no CPU of ours involved (an RDMA
/// WRITE); over UCX's TCP transport UCX emulates it. The backup registers its sync staging buffer and gives the
/// primary <see cref="PackedKey"/> (the remote key) at the start of a sync, over the authenticated link.
/// </summary>
public sealed unsafe class UcxMemoryRegion : IDisposable
{
    private readonly UcxWorker _worker;
    private nint _memh;

    public UcxMemoryRegion(UcxWorker worker, void* address, ulong length)
    {
        if (length == 0) throw new ArgumentOutOfRangeException(nameof(length), "nothing to register");
        _worker = worker;
        Address = (ulong)address;
        Length = length;
        byte* p = stackalloc byte[ParamsBytes];
        new Span<byte>(p, ParamsBytes).Clear();
        *(ulong*)p = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
        *(nint*)(p + 8) = (nint)address;
        *(ulong*)(p + 16) = length;
        Check(ucp_mem_map(worker.Context, p, out _memh), "memory registration");
    }

    /// <summary>Where the region starts in this process (the peer addresses it by this value plus an offset).</summary>
    public ulong Address { get; }
    public ulong Length { get; }

    /// <summary>The remote key the peer needs to write here (opaque bytes, a few dozen to a few hundred).</summary>
    public byte[] PackedKey()
    {
        Check(ucp_rkey_pack(_worker.Context, _memh, out nint buffer, out nuint size), "remote key pack");
        try { return new ReadOnlySpan<byte>((void*)buffer, (int)size).ToArray(); }
        finally { ucp_rkey_buffer_release(buffer); }
    }

    /// <summary>Unregisters: a peer still holding the key can no longer write here (on RDMA its writes fail).</summary>
    public void Dispose()
    {
        if (_memh == 0) return;
        if (!_worker.IsDisposed) ucp_mem_unmap(_worker.Context, _memh);   // (a destroyed context took it along)
        _memh = 0;
    }
}
