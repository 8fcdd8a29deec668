using static Plover.Transport.Ucx.UcxNative;

namespace Plover.Transport.Ucx;

/// <summary>
/// One-sided writes into a peer's <see cref="UcxMemoryRegion"/> over an established <see cref="UcxStream"/>:
/// <see cref="Put"/> posts a ucp_put (an RDMA WRITE on RDMA hardware), <see cref="Flush"/> waits until every put so far
/// is complete at the peer. Only then may the writer tell the peer (a message on the stream) that the data is there:
/// the peer must not read the region before that message, so its apply and abort paths stay as they are. Every put
/// is bounds-checked against the region the peer announced.
/// </summary>
public sealed unsafe class UcxRemoteWriter : IDisposable
{
    private readonly UcxStream _stream;
    private readonly ulong _remoteAddress;
    private readonly ulong _length;
    private nint _rkey;

    public UcxRemoteWriter(UcxStream stream, ReadOnlySpan<byte> packedKey, ulong remoteAddress, ulong length)
    {
        _stream = stream;
        _remoteAddress = remoteAddress;
        _length = length;
        lock (stream.Lock)
        {
            if (stream.IsClosed) throw new IOException("the UCX connection is closed");
            fixed (byte* key = packedKey) Check(ucp_ep_rkey_unpack(stream.Endpoint, key, out _rkey), "remote key unpack");
        }
    }

    /// <summary>Posts a write of length bytes at source to the peer's region at offset. source must stay untouched
    /// until <see cref="Flush"/> returns.</summary>
    public void Put(byte* source, int length, ulong offset)
    {
        if (length < 0 || offset > _length || (ulong)length > _length - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{length} bytes at {offset} do not fit the peer's {_length}-byte region");
        nint request;
        lock (_stream.Lock)
        {
            if (_stream.IsClosed || _rkey == 0) throw new IOException("the UCX connection is closed");
            byte* param = stackalloc byte[ParamsBytes];
            new Span<byte>(param, ParamsBytes).Clear();
            request = ucp_put_nbx(_stream.Endpoint, source, (nuint)length, _remoteAddress + offset, _rkey, param);
        }
        if (IsError(request)) throw new IOException($"UCX put failed: {Describe((int)request)}");
        if (request != 0)
        {
            ucp_request_free(request);   // completes by itself; Flush is what we wait on
            _stream.Worker.Signal();
        }
    }

    /// <summary>Waits until every put so far has completed at the peer (throws after timeoutMs, on a failure, or
    /// once peerGone says the peer closed the connection).</summary>
    public void Flush(int timeoutMs, Func<bool>? peerGone = null)
    {
        nint request;
        lock (_stream.Lock)
        {
            if (_stream.IsClosed) throw new IOException("the UCX connection is closed");
            byte* param = stackalloc byte[ParamsBytes];
            new Span<byte>(param, ParamsBytes).Clear();
            request = ucp_ep_flush_nbx(_stream.Endpoint, param);
        }
        if (IsError(request)) throw new IOException($"UCX flush failed: {Describe((int)request)}");
        if (request != 0) _stream.Worker.Signal();
        _stream.Wait(request, timeoutMs, "flush", progressHere: true, peerGone);
    }

    /// <summary>Frees the remote key (before the stream's endpoint is closed).</summary>
    public void Dispose()
    {
        lock (_stream.Lock)
        {
            if (_rkey == 0) return;
            ucp_rkey_destroy(_rkey);
            _rkey = 0;
        }
    }
}
