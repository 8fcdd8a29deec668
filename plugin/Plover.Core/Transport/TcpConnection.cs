using System.Net.Sockets;

namespace Plover.Transport;

/// <summary>
/// A <see cref="PeerConnection"/> over a TCP socket: a flush tries a non-blocking write on the caller's thread; the
/// writer thread finishes with blocking writes whatever did not fit.
/// </summary>
internal sealed class TcpConnection : PeerConnection
{
    private readonly Socket _socket;

    public TcpConnection(TcpTransport owner, Socket socket, int peerId, FrameReader reader, FrameWriter writer, ByteBuffer recv,
                         HandshakeResult keys, long maxQueuedBytes)
        : base(owner, peerId, reader, writer, recv, maxQueuedBytes, receiveChunk: 16 * 1024)
    {
        _socket = socket;
        writer.Authenticate(new FrameAuthenticator(keys.SendKey, keys.Encrypt));
        reader.Authenticate(new FrameAuthenticator(keys.ReceiveKey, keys.Encrypt));
        StartWriter($"plover-tcp-write-{peerId}");
    }

    protected override void TryStartWrite(ByteBuffer data, out bool complete)
    {
        int n = LinuxSocket.TrySend(_socket, data.Data, out int errno);
        if (n < 0) throw new IOException($"errno {errno}");
        data.Consume(n);
        complete = data.Count == 0;
    }

    protected override void FinishWrite(ByteBuffer data)
    {
        var rest = data.Data;
        while (!rest.IsEmpty)
        {
            int n = _socket.Send(rest, SocketFlags.None, out var err);
            if (err != SocketError.Success) throw new IOException(err.ToString());
            rest = rest[n..];
        }
        data.Clear();
    }

    protected override int Read(Span<byte> into)
    {
        int n = _socket.Receive(into, SocketFlags.None, out var err);
        if (err != SocketError.Success) throw new IOException(err.ToString());
        return n == 0 ? -1 : n;
    }

    protected override void CloseTransport()
    {
        try { _socket.Shutdown(SocketShutdown.Both); } catch { /* already gone */ }
        _socket.Dispose();
    }
}
