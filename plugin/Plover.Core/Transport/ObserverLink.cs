using System.Net;
using System.Net.Sockets;
using Google.Protobuf;
using Plover.Wire;

namespace Plover.Transport;

/// <summary>
/// One status question from an observer (<c>plover status</c>) to a node, over the node's consensus port: the
/// observer authenticates with its own key pair (listed under "observers" in the config, by name; node id 0,
/// purpose observer), sends a NodeStatusRequest, gets a NodeStatus, and the connection closes. An observer can do
/// nothing else: its key is no node's, so it cannot open a consensus or sync channel, and here any other frame, or
/// none within the timeout, closes the connection.
/// </summary>
public static class ObserverLink
{
    /// <summary>Asks node nodeId at endpoint; throws IOException (or HandshakeException) naming the problem.</summary>
    /// <param name="self">The observer: SelfId 0, ObserverName set, its key; NodeKeys to check the node's key.</param>
    public static NodeStatus Query(IPEndPoint endpoint, ClusterIdentity self, int nodeId, TimeSpan timeout)
    {
        using var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var connect = socket.BeginConnect(endpoint, null, null);
        if (!connect.AsyncWaitHandle.WaitOne(timeout)) throw new IOException($"no answer from {endpoint} within {timeout.TotalMilliseconds:F0} ms");
        socket.EndConnect(connect);
        socket.SendTimeout = (int)timeout.TotalMilliseconds;
        using var recv = new ByteBuffer();
        var reader = new FrameReader();
        var writer = new FrameWriter();
        var result = Handshake.Dial(socket, recv, reader, writer, self, ChannelPurpose.Observer, nodeId, timeout);
        using var send = new FrameAuthenticator(result.SendKey, result.Encrypt);
        using var receive = new FrameAuthenticator(result.ReceiveKey, result.Encrypt);
        writer.Authenticate(send);
        reader.Authenticate(receive);
        using var output = new ByteBuffer(256);
        writer.Write(output, new ProtobufBody(FrameType.NodeStatusRequest, new NodeStatusRequest()));
        SendAll(socket, output.Data);
        var status = new NodeStatus();
        ReadOne(socket, recv, reader, FrameType.NodeStatus, status, Environment.TickCount64 + (long)timeout.TotalMilliseconds);
        return status;
    }

    /// <summary>The node's side, on the connection's thread right after the handshake named an observer.</summary>
    public static void Serve(Socket socket, ByteBuffer recv, FrameReader reader, FrameWriter writer, HandshakeResult result,
                             Func<NodeStatus>? status, TimeSpan timeout)
    {
        using var send = new FrameAuthenticator(result.SendKey, result.Encrypt);
        using var receive = new FrameAuthenticator(result.ReceiveKey, result.Encrypt);
        writer.Authenticate(send);
        reader.Authenticate(receive);
        ReadOne(socket, recv, reader, FrameType.NodeStatusRequest, new NodeStatusRequest(),
            Environment.TickCount64 + (long)timeout.TotalMilliseconds);
        var answer = status?.Invoke() ?? new NodeStatus { Role = "starting", Problem = "no status yet" };
        using var output = new ByteBuffer(512);
        writer.Write(output, new ProtobufBody(FrameType.NodeStatus, answer));
        SendAll(socket, output.Data);
    }

    private static void ReadOne(Socket socket, ByteBuffer recv, FrameReader reader, FrameType type, IMessage into, long deadline)
    {
        while (true)
        {
            var state = reader.TryRead(recv.Data, out var frame, out int consumed, out int needed);
            if (state == FrameStatus.Invalid) throw new IOException(reader.Error);
            if (state == FrameStatus.Complete)
            {
                if (frame.Type != type) throw new IOException($"expected a {type} frame, got {frame.Type}");
                try { into.MergeFrom(frame.Header); }
                catch (InvalidProtocolBufferException e) { throw new IOException($"malformed {type}: {e.Message}"); }
                recv.Consume(consumed);
                return;
            }
            long left = deadline - Environment.TickCount64;
            if (left <= 0) throw new IOException($"no {type} within the timeout");
            socket.ReceiveTimeout = (int)Math.Max(1, left);
            recv.EnsureContiguous(needed);
            int n;
            try { n = socket.Receive(recv.GetSpace(Math.Max(needed - recv.Count, 512))); }
            catch (SocketException e) { throw new IOException($"connection lost: {e.SocketErrorCode}"); }
            if (n == 0) throw new IOException("connection closed");
            recv.Commit(n);
        }
    }

    private static void SendAll(Socket socket, ReadOnlySpan<byte> data)
    {
        try
        {
            while (!data.IsEmpty) data = data[socket.Send(data)..];
        }
        catch (SocketException e) { throw new IOException($"connection lost: {e.SocketErrorCode}"); }
    }
}
