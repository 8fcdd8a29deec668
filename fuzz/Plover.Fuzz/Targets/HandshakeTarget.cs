using System.Net;
using System.Net.Sockets;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Fuzz.Targets;

/// <summary>
/// The handshake as node 2 runs it (<see cref="Handshake.Dial"/> or <see cref="Handshake.Accept"/>), on a loopback
/// connection whose peer sends the input and then closes its sending side. Byte 0: bit 0 set = node 2 dialed node 1
/// (expects node 1's Hello and signature), clear = node 2 accepted; bit 1 set = the sync channel, clear = the
/// consensus channel (where observers are let in). The rest is the peer's byte stream (frames as the FrameReader
/// reads them in handshake mode). Documented refusal: HandshakeException (the connection is closed). Without a
/// node's or an observer's private key the input cannot sign the transcript, so a completion is a finding too.
/// </summary>
public sealed class HandshakeTarget : IFuzzTarget, IDisposable
{
    private Socket? _listener;

    public string Name => "handshake";
    public string Description => "the peer's handshake bytes -> Handshake.Dial / Accept (Hello, AuthProof) on node 2";

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
        bool dial = (input[0] & 1) != 0;
        var purpose = (input[0] & 2) != 0 ? ChannelPurpose.Sync : ChannelPurpose.Consensus;
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        peer.Connect(_listener.LocalEndPoint!);
        using var self = _listener.Accept();
        var stream = input[1..];
        while (!stream.IsEmpty) stream = stream[peer.Send(stream)..];
        peer.Shutdown(SocketShutdown.Send);

        using var recv = new ByteBuffer(1024);
        var timeout = TimeSpan.FromSeconds(5);
        try
        {
            var result = dial
                ? Handshake.Dial(self, recv, new FrameReader(), new FrameWriter(), FuzzIdentity.Of(2), purpose, 1, timeout)
                : Handshake.Accept(self, recv, new FrameReader(), new FrameWriter(), FuzzIdentity.Of(2), purpose,
                                   purpose == ChannelPurpose.Sync ? 1 : 0, timeout, allowObserver: purpose == ChannelPurpose.Consensus);
            throw new FuzzFinding($"a handshake without a private key completed (peer {result.PeerId})");
        }
        catch (HandshakeException e)
        {
            LastOutcome = "refused: " + e.Message;   // the connection is closed
        }
    }

    public void Dispose() => _listener?.Dispose();

    public IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        byte[] Hello(int node, int expected, ChannelPurpose purpose, string observer = "") => Frame(FrameType.Hello, new Hello
        {
            ProtocolVersion = Handshake.ProtocolVersion, Cluster = "fuzz", NodeId = node, ExpectedPeerId = expected,
            Nonce = Google.Protobuf.ByteString.CopyFrom(new byte[Handshake.NonceSize]), Purpose = purpose.Name(),
            EphemeralKey = Google.Protobuf.ByteString.CopyFrom(P256Generator), Observer = observer, Encrypt = true,
        });
        byte[] proof = Frame(FrameType.AuthProof, new AuthProof { Signature = Google.Protobuf.ByteString.CopyFrom(new byte[64]) });
        yield return ("accept-node1", [0, .. Hello(1, 2, ChannelPurpose.Consensus), .. proof]);
        yield return ("accept-observer", [0, .. Hello(Handshake.ObserverId, 2, ChannelPurpose.Observer, "ops"), .. proof]);
        yield return ("accept-sync-node1", [2, .. Hello(1, 2, ChannelPurpose.Sync), .. proof]);
        yield return ("dial-node1", [1, .. Hello(1, 0, ChannelPurpose.Consensus), .. proof]);
    }

    /// <summary>A fixed valid P-256 point (the curve's generator, X | Y), so that the seeds are the same every run.</summary>
    private static readonly byte[] P256Generator = Convert.FromHexString(
        "6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296" +
        "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5");

    private static byte[] Frame(FrameType type, Google.Protobuf.IMessage message)
    {
        using var output = new ByteBuffer(256);
        new FrameWriter().Write(output, new ProtobufBody(type, message));
        return output.Data.ToArray();
    }
}
