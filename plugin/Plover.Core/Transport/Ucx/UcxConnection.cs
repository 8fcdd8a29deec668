using System.Net.Sockets;

namespace Plover.Transport.Ucx;

/// <summary>
/// A <see cref="PeerConnection"/> over a UCX stream (same frames, keys and sequence numbers as over TCP). A flush
/// posts the in-flight bytes to UCX on the caller's thread; the writer thread waits for a send UCX could not finish at
/// once. UCX reads the posted bytes later, so they are copied into a pinned buffer (never moved by the GC) before
/// posting. The reader takes received bytes from UCX and, while none come, checks the bootstrap TCP socket: its
/// closing (or a failed UCX request) closes the connection.
/// </summary>
internal sealed unsafe class UcxConnection : PeerConnection
{
    private const int SendTimeoutMs = 30_000;
    private readonly Socket _socket;
    private readonly UcxStream _stream;
    private byte[] _posted = GC.AllocateUninitializedArray<byte>(64 * 1024, pinned: true);
    private nint _request;      // the posted send UCX has not finished (owned by whoever owns the in-flight buffer)

    /// <param name="reader">Authenticated already (the UcxHello came through it), as is writer.</param>
    public UcxConnection(TcpTransport owner, Socket socket, UcxStream stream, int peerId, FrameReader reader, FrameWriter writer,
                         ByteBuffer recv, long maxQueuedBytes)
        : base(owner, peerId, reader, writer, recv, maxQueuedBytes, receiveChunk: 64 * 1024)
    {
        _socket = socket;
        _stream = stream;
        StartWriter($"plover-ucx-write-{peerId}");
    }

    protected override void TryStartWrite(ByteBuffer data, out bool complete)
    {
        Post(data);
        complete = _request == 0;
    }

    protected override void FinishWrite(ByteBuffer data)
    {
        while (true)
        {
            nint request = _request;
            _request = 0;
            _stream.Wait(request, SendTimeoutMs, "send");   // frees it (0: none in progress); UCX is done with _posted
            if (data.Count == 0) return;
            Post(data);
        }
    }

    /// <summary>Copies data into the pinned buffer (data is empty afterwards) and posts it.</summary>
    private void Post(ByteBuffer data)
    {
        int n = data.Count;
        if (_posted.Length < n) _posted = GC.AllocateUninitializedArray<byte>(Math.Max(n, _posted.Length * 2), pinned: true);
        data.Data.CopyTo(_posted);
        data.Clear();
        fixed (byte* p = _posted) _request = _stream.Post(p, n);   // pinned: the address stays valid after fixed
    }

    protected override int Read(Span<byte> into)
    {
        int n = _stream.Receive(into, 50);
        if (n > 0) return n;
        return _socket.Poll(0, SelectMode.SelectRead) && _socket.Available == 0 ? -1 : 0;
    }

    protected override void CloseTransport()
    {
        _stream.Dispose();
        try { _socket.Shutdown(SocketShutdown.Both); } catch { /* already gone */ }
        _socket.Dispose();
    }
}
