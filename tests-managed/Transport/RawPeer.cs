using System.Net;
using System.Net.Sockets;
using Plover.Transport;

namespace Plover.Tests.Transport;

/// <summary>A hand-driven client that speaks the wire protocol, correctly or not, to a real listener.</summary>
public sealed class RawPeer : IDisposable
{
    public readonly Socket Socket;
    public readonly ByteBuffer Recv = new();
    public readonly FrameReader Reader = new();
    public readonly FrameWriter Writer = new();

    private RawPeer(Socket s) => Socket = s;

    public static RawPeer Connect(IPEndPoint ep)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        s.Connect(ep);
        return new RawPeer(s);
    }

    /// <summary>Runs the real handshake (dialing) as the given identity; on success switches to authenticated
    /// frames. The acceptor checks our signature last: a refusal of it shows as the connection closing afterwards.</summary>
    public HandshakeResult Authenticate(ClusterIdentity identity, int expectedPeer, ChannelPurpose purpose = ChannelPurpose.Consensus)
    {
        var r = Handshake.Dial(Socket, Recv, Reader, Writer, identity, purpose, expectedPeer, TimeSpan.FromSeconds(2));
        Writer.Authenticate(new FrameAuthenticator(r.SendKey, r.Encrypt));
        Reader.Authenticate(new FrameAuthenticator(r.ReceiveKey, r.Encrypt));
        return r;
    }

    /// <summary>Bytes of one frame as the writer would send them next (advances its sequence number).</summary>
    public byte[] Encode(FrameType type, byte[] body)
    {
        using var b = new ByteBuffer(256);
        Writer.Write(b, type, body);
        return b.Data.ToArray();
    }

    public void SendBytes(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty) data = data[Socket.Send(data)..];
    }

    /// <summary>Reads the next frame (type and body), or null if the connection closed or nothing came in time.</summary>
    public (FrameType Type, byte[] Body)? ReadFrame(int timeoutMs = 3000)
    {
        Socket.ReceiveTimeout = timeoutMs;
        while (true)
        {
            var st = Reader.TryRead(Recv.Data, out var f, out int consumed, out int needed);
            if (st == FrameStatus.Complete)
            {
                var result = (f.Type, f.Body.ToArray());
                Recv.Consume(consumed);
                return result;
            }
            if (st == FrameStatus.Invalid) throw new InvalidDataException(Reader.Error);
            try
            {
                int n = Socket.Receive(Recv.GetSpace(4096));
                if (n == 0) return null;
                Recv.Commit(n);
            }
            catch (SocketException) { return null; }
        }
    }

    /// <summary>True if the other side closes the connection within the timeout (reads and discards until EOF).</summary>
    public bool WaitClosed(int timeoutMs = 10000)
    {
        Socket.ReceiveTimeout = timeoutMs;
        var buf = new byte[4096];
        try
        {
            while (true)
                if (Socket.Receive(buf) == 0) return true;
        }
        catch (SocketException e) { return e.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted; }
    }

    public void Dispose()
    {
        Socket.Dispose();
        Recv.Dispose();
    }
}
