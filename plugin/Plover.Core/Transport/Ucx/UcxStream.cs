using static Plover.Transport.Ucx.UcxNative;

namespace Plover.Transport.Ucx;

/// <summary>
/// An ordered byte stream to one peer over a UCX endpoint (ucp stream API), created from the peer's worker
/// address; both sides create one and UCX pairs them. It carries the same authenticated frames as a TCP socket.
/// Every call on the endpoint holds _lock, so <see cref="Dispose"/> from any thread cannot free it under a call.
/// </summary>
public sealed unsafe class UcxStream : IDisposable
{
    private readonly UcxWorker _worker;
    private readonly object _lock = new();
    private nint _ep;
    private nint _data;          // received data UCX lent us (ucp_stream_recv_data_nb), not yet all copied out
    private nuint _dataLength;
    private nuint _dataOffset;

    public UcxStream(UcxWorker worker, ReadOnlySpan<byte> peerAddress)
    {
        _worker = worker;
        byte* p = stackalloc byte[ParamsBytes];
        new Span<byte>(p, ParamsBytes).Clear();
        fixed (byte* address = peerAddress)
        {
            *(ulong*)p = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
            *(nint*)(p + 8) = (nint)address;
            *(int*)(p + 16) = UCP_ERR_HANDLING_MODE_PEER;   // a dead peer fails our requests instead of hanging them
            *(nint*)(p + 24) = (nint)(delegate* unmanaged[Cdecl]<nint, nint, int, void>)&OnEndpointError;
            Check(ucp_ep_create(worker.Handle, p, out _ep), "endpoint create");
        }
    }

    /// <summary>UCX reports a failed endpoint here (without a handler it logs an ERROR line to stderr). Nothing to do:
    /// the requests on it fail, and the connection notices that, or its TCP socket closing.</summary>
    [System.Runtime.InteropServices.UnmanagedCallersOnly(CallConvs = [typeof(System.Runtime.CompilerServices.CallConvCdecl)])]
    private static void OnEndpointError(nint arg, nint ep, int status) { }

    public UcxWorker Worker => _worker;
    public bool IsClosed => Volatile.Read(ref _ep) == 0;
    internal nint Endpoint => _ep;
    internal object Lock => _lock;

    /// <summary>Posts a send of length bytes at data, which must stay in place and untouched until the returned
    /// request completes (0: done already).</summary>
    public nint Post(byte* data, int length)
    {
        nint request;
        lock (_lock)
        {
            if (_ep == 0) throw new IOException("the UCX connection is closed");
            byte* param = stackalloc byte[ParamsBytes];
            new Span<byte>(param, ParamsBytes).Clear();
            request = ucp_stream_send_nbx(_ep, data, (nuint)length, param);
        }
        if (IsError(request)) throw new IOException($"UCX send failed: {Describe((int)request)}");
        if (request != 0) _worker.Signal();
        return request;
    }

    /// <summary>Waits for a posted request (0 is done) and frees it; throws on a failure or after timeoutMs.</summary>
    /// <param name="progressHere">Progress the worker on this thread too (one-sided puts and flushes, which UCX's
    /// TCP emulation completes without an event on the worker's fd); the stream leaves that to the progress thread,
    /// since threads contending for the worker's lock stall each other on a loaded host.</param>
    /// <param name="peerGone">Checked while waiting (null: never): true gives up at once (a completion that needs
    /// the peer, such as a flush, is not failed by UCX over TCP when the peer closes its endpoint).</param>
    public void Wait(nint request, int timeoutMs, string what, bool progressHere = false, Func<bool>? peerGone = null)
    {
        if (request == 0) return;
        long deadline = Environment.TickCount64 + timeoutMs;
        while (true)
        {
            long seen = _worker.Generation;
            int status = ucp_request_check_status(request);
            if (status != UCS_INPROGRESS)
            {
                ucp_request_free(request);
                if (status != UCS_OK) throw new IOException($"UCX {what} failed: {Describe(status)}");
                return;
            }
            long left = deadline - Environment.TickCount64;
            bool gone = !IsClosed && left > 0 && peerGone is not null && peerGone();
            if (left <= 0 || IsClosed || gone)
            {
                ucp_request_free(request);   // UCX completes and releases it by itself (or on the endpoint's close)
                throw new IOException(IsClosed ? $"UCX {what}: connection closed" : gone ? $"UCX {what}: the peer closed the connection" : $"UCX {what} timed out");
            }
            if (progressHere && _worker.ProgressHere()) continue;
            _worker.WaitForProgress(seen, (int)Math.Min(left, 20));
        }
    }

    /// <summary>Sends all of data, blocking until UCX is done with the buffer (on a failure the stream is closed,
    /// so UCX lets go of the buffer before this returns).</summary>
    public void Send(ReadOnlySpan<byte> data, int timeoutMs)
    {
        fixed (byte* p = data)
        {
            try { Wait(Post(p, data.Length), timeoutMs, "send"); }
            catch (IOException) { Dispose(); throw; }
        }
    }

    /// <summary>Copies received bytes into into (at most its length); 0 when nothing came within waitMs.</summary>
    public int Receive(Span<byte> into, int waitMs)
    {
        long deadline = Environment.TickCount64 + waitMs;
        while (true)
        {
            long seen = _worker.Generation;
            int n = TryReceive(into);
            if (n > 0) return n;
            long left = deadline - Environment.TickCount64;
            if (left <= 0) return 0;
            _worker.WaitForProgress(seen, (int)Math.Min(left, 20));
        }
    }

    private int TryReceive(Span<byte> into)
    {
        lock (_lock)
        {
            if (_ep == 0) throw new IOException("the UCX connection is closed");
            if (_data == 0)
            {
                nint data = ucp_stream_recv_data_nb(_ep, out nuint length);
                if (data == 0) return 0;
                if (IsError(data)) throw new IOException($"UCX receive failed: {Describe((int)data)}");
                (_data, _dataLength, _dataOffset) = (data, length, 0);
            }
            int n = (int)Math.Min((nuint)into.Length, _dataLength - _dataOffset);
            new ReadOnlySpan<byte>((byte*)_data + _dataOffset, n).CopyTo(into);
            _dataOffset += (nuint)n;
            if (_dataOffset == _dataLength)
            {
                ucp_stream_data_release(_ep, _data);
                _data = 0;
            }
            return n;
        }
    }

    /// <summary>Closes the endpoint (forcefully: the peer may be gone). Idempotent, any thread.</summary>
    public void Dispose()
    {
        nint request;
        lock (_lock)
        {
            if (_ep == 0) return;
            if (_data != 0) ucp_stream_data_release(_ep, _data);
            _data = 0;
            byte* param = stackalloc byte[ParamsBytes];
            new Span<byte>(param, ParamsBytes).Clear();
            *(uint*)param = UCP_OP_ATTR_FIELD_FLAGS;
            *(uint*)(param + 4) = UCP_EP_CLOSE_FLAG_FORCE;
            request = ucp_ep_close_nbx(_ep, param);
            Volatile.Write(ref _ep, 0);
        }
        _worker.Signal();
        if (request == 0 || IsError(request)) return;
        long deadline = Environment.TickCount64 + 1000;
        while (ucp_request_check_status(request) == UCS_INPROGRESS && Environment.TickCount64 < deadline)
            _worker.WaitForProgress(_worker.Generation, 10);
        ucp_request_free(request);
    }
}
