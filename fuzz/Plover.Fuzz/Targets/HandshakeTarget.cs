using System.Net;
using System.Net.Sockets;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Fuzz.Targets;

/// <summary>
/// The handshake as node 2 runs it (<see cref="Handshake.Run"/>, kept thin: the handshake is being reworked), on a
/// loopback connection whose peer sends the input and then closes its sending side. Byte 0: bit 0 set = node 2
/// dialed node 1 (expects node 1's Hello), clear = node 2 accepted (any lower member, or an observer). The rest is
/// the peer's byte stream (frames as the FrameReader reads them in handshake mode). Documented refusal:
/// HandshakeException (the connection is closed). Without the cluster key the input cannot complete the
/// handshake, so a completion is a finding too.
/// </summary>
public sealed class HandshakeTarget : IFuzzTarget, IDisposable
{
    private static readonly byte[] Key = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
    private Socket? _listener;

    public string Name => "handshake";
    public string Description => "the peer's handshake bytes -> Handshake.Run (Hello, AuthProof) on node 2";

    public string LastOutcome { get; private set; } = "";

    public void Run(ReadOnlySpan<byte> input)
    {
        LastOutcome = "refused: empty input";
        if (input.IsEmpty) return;
        if (_listener is null)
        {
            _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen(4);
        }
        int expectedPeer = (input[0] & 1) != 0 ? 1 : 0;
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        peer.Connect(_listener.LocalEndPoint!);
        using var self = _listener.Accept();
        var stream = input[1..];
        while (!stream.IsEmpty) stream = stream[peer.Send(stream)..];
        peer.Shutdown(SocketShutdown.Send);

        using var recv = new ByteBuffer(1024);
        try
        {
            var result = Handshake.Run(self, recv, new FrameReader(), new FrameWriter(), new ClusterIdentity("fuzz", Key, 2, [1, 2, 3]), expectedPeer, TimeSpan.FromSeconds(5), allowObserver: true);
            throw new FuzzFinding($"a handshake without the cluster key completed (peer {result.PeerId})");
        }
        catch (HandshakeException e)
        {
            LastOutcome = "refused: " + e.Message;   // the connection is closed
        }
    }

    public void Dispose() => _listener?.Dispose();

    public IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        byte[] Hello(int node, int expected) => Frame(FrameType.Hello, new Hello
        {
            ProtocolVersion = Handshake.ProtocolVersion, Cluster = "fuzz", NodeId = node, ExpectedPeerId = expected,
            Nonce = Google.Protobuf.ByteString.CopyFrom(new byte[Handshake.NonceSize]),
        });
        byte[] proof = Frame(FrameType.AuthProof, new AuthProof { Mac = Google.Protobuf.ByteString.CopyFrom(new byte[Handshake.ProofSize]) });
        yield return ("accept-node1", [0, .. Hello(1, 2), .. proof]);
        yield return ("accept-observer", [0, .. Hello(Handshake.ObserverId, 2), .. proof]);
        yield return ("dial-node1", [1, .. Hello(1, 0), .. proof]);
    }

    private static byte[] Frame(FrameType type, Google.Protobuf.IMessage message)
    {
        using var output = new ByteBuffer(256);
        new FrameWriter().Write(output, new ProtobufBody(type, message));
        return output.Data.ToArray();
    }
}
