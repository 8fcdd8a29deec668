using System.Net.Sockets;
using Google.Protobuf;

namespace Plover.Transport.Ucx;

/// <summary>
/// Moves an authenticated TCP connection's frames onto UCX: right after the handshake both sides send their worker
/// address in a UcxHello frame (authenticated and sequence-numbered like every frame after it, so a stranger cannot
/// splice in an address) and each creates an endpoint to the other's. The frame sequence numbers and keys carry
/// on over UCX unchanged; the TCP socket stays open, idle, and its closing tells that the peer is gone.
/// </summary>
public static class UcxBootstrap
{
    public static UcxStream Exchange(Socket socket, ByteBuffer recv, FrameReader reader, FrameWriter writer, UcxWorker worker, TimeSpan timeout) =>
        Exchange(socket, recv, reader, writer, worker, timeout, ring: null);

    /// <param name="ring">Also announce this ring (its region) and attach it to the peer's: both sides must give one.</param>
    public static UcxStream Exchange(Socket socket, ByteBuffer recv, FrameReader reader, FrameWriter writer, UcxWorker worker, TimeSpan timeout,
                                     UcxFrameRing? ring)
    {
        var output = new ByteBuffer(4096);
        try
        {
            var hello = new Wire.UcxHello { WorkerAddress = ByteString.CopyFrom(worker.Address()) };
            if (ring is not null)
            {
                var (key, address, length) = ring.Announcement;
                (hello.RingKey, hello.RingAddress, hello.RingLength) = (ByteString.CopyFrom(key), address, length);
            }
            writer.Write(output, new ProtobufBody(FrameType.UcxHello, hello));
            Handshake.SendAll(socket, output.Data);
        }
        finally { output.Dispose(); }
        var theirs = new Wire.UcxHello();
        Handshake.ReadMessage(socket, recv, reader, FrameType.UcxHello, theirs, Environment.TickCount64 + (long)timeout.TotalMilliseconds);
        if (theirs.WorkerAddress.IsEmpty) throw new HandshakeException("the peer sent an empty UCX worker address");
        if (recv.Count != 0) throw new HandshakeException($"{recv.Count} unexpected bytes after the UCX address on the TCP connection");
        if ((ring is not null) != !theirs.RingKey.IsEmpty)
            throw new HandshakeException("one side writes sync frames one-sided and the other does not (same Plover version on both?)");
        UcxStream? stream = null;
        try
        {
            stream = new UcxStream(worker, theirs.WorkerAddress.Span);
            ring?.Attach(stream, theirs.RingKey.Span, theirs.RingAddress, theirs.RingLength);
            return stream;
        }
        catch (IOException e)
        {
            stream?.Dispose();
            throw new HandshakeException($"cannot reach the peer over UCX: {e.Message}");
        }
    }
}
