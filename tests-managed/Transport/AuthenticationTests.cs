using System.Buffers.Binary;
using System.Net;
using Plover.Transport;
using Xunit;

namespace Plover.Tests.Transport;

/// <summary>
/// A real listener (node 3 of {1, 2, 3, 4}; node 4 is down) on loopback, a genuine node 1 dialing it, and
/// hand-driven clients (as node 2, or as impostors) that misbehave. Every bad connection must be refused with a
/// logged reason while node 1 keeps being served.
/// </summary>
public sealed class AuthenticationTests : IDisposable
{
    private readonly TestLog _serverLog = new();
    private readonly TestLog _goodLog = new();
    private readonly RecordingSink _serverSink = new(3);
    private readonly RecordingSink _goodSink = new(1);
    private readonly TcpTransport _server;
    private readonly TcpTransport _good;
    private readonly IPEndPoint _serverEp;

    public AuthenticationTests()
    {
        var ports = TransportTestKit.FreePorts(4);
        var eps = TransportTestKit.Endpoints([1, 2, 3, 4], ports);
        _serverEp = eps[3];
        _server = new TcpTransport(TransportTestKit.Options(3, eps, _serverLog.Sink, handshakeTimeout: TimeSpan.FromSeconds(10)));
        _server.Start(_serverSink);
        _good = new TcpTransport(TransportTestKit.Options(1, eps, _goodLog.Sink));
        _good.Start(_goodSink);
        Assert.True(TransportTestKit.WaitUntil(() => _good.IsConnected(3) && _server.IsConnected(1)), "genuine node 1 did not connect\n" + _serverLog);
    }

    public void Dispose()
    {
        _good.Dispose();
        _server.Dispose();
    }

    private static ClusterIdentity Identity(int self, IdentityKey? key = null, string cluster = TransportTestKit.Cluster, int[]? members = null) =>
        TestKeys.Identity(self, members ?? [1, 2, 3, 4], cluster, key: key);

    /// <summary>The genuine peer still gets answers: a ping from node 1 to node 3 comes back as a pong.</summary>
    private void AssertGoodPeerServed()
    {
        Assert.True(TransportTestKit.WaitUntil(() => _good.IsConnected(3)), "node 1 lost its connection\n" + _serverLog);
        Assert.DoesNotContain(_serverLog.Lines, l => l.Contains("connection to node 1 closed"));
        var marker = Guid.NewGuid().ToByteArray();
        Assert.True(TransportTestKit.WaitUntil(() =>
        {
            _good.Send(3, FrameType.Ping, TransportTestKit.RawBody(marker));
            _good.Flush();
            return TransportTestKit.WaitUntil(() => _goodSink.Frames.Any(f => f.Type == FrameType.Pong && f.Body.AsSpan(4).SequenceEqual(marker)), 200);
        }, 5000), "no pong from node 3\n" + _serverLog);
    }

    private void AssertRefused(RawPeer peer, string reason)
    {
        Assert.True(peer.WaitClosed(), $"connection was not closed (expected: {reason})");
        Assert.True(_serverLog.WaitFor(reason), $"no log line containing '{reason}':\n{_serverLog}");
        AssertGoodPeerServed();
    }

    [Fact]
    public void GoodPeerExchangesPingPong() => AssertGoodPeerServed();

    [Fact]
    public void NodeWithKeyOfNode1CannotAuthenticateAsNode2()
    {
        using var peer = RawPeer.Connect(_serverEp);
        // The acceptor checks the dialer's signature last, so the dialer's side completes; the acceptor refuses.
        peer.Authenticate(Identity(2, key: TestKeys.Node(1)), 3);
        AssertRefused(peer, "authentication failed: node 2's signature does not verify");
    }

    [Fact]
    public void AFreshKeyCannotAuthenticateAsAMember()
    {
        using var peer = RawPeer.Connect(_serverEp);
        peer.Authenticate(Identity(2, key: IdentityKey.Generate()), 3);
        AssertRefused(peer, "authentication failed: node 2's signature does not verify");
    }

    [Fact]
    public void DialerRefusesAnAcceptorThatIsNotTheNodeItClaims()
    {
        // Node 2 dials node 3 but believes node 3's public key is another one: the acceptor's signature fails.
        using var peer = RawPeer.Connect(_serverEp);
        var keys = TestKeys.NodeKeys([1, 2, 3, 4]);
        keys[3] = IdentityKey.Generate().PublicKey;
        var self = new ClusterIdentity(TransportTestKit.Cluster, 2, TestKeys.Node(2), keys);
        var e = Assert.Throws<HandshakeException>(() => peer.Authenticate(self, 3));
        Assert.Contains("node 3's signature does not verify", e.Message);
    }

    [Fact]
    public void ObserverReadsStatus()
    {
        Wire.NodeStatus status;
        try { status = ObserverLink.Query(_serverEp, TestKeys.ObserverIdentity([1, 2, 3, 4]), 3, TimeSpan.FromSeconds(10)); }
        catch (HandshakeException e) { throw new Xunit.Sdk.XunitException($"{e.Message}\nthe server's log:\n{_serverLog}"); }   // refused once in CI, reason unseen
        Assert.Equal("starting", status.Role);
        AssertGoodPeerServed();
    }

    [Fact]
    public void ObserverCannotOpenAConsensusChannel()
    {
        using var peer = RawPeer.Connect(_serverEp);
        Assert.Throws<HandshakeException>(() => peer.Authenticate(TestKeys.ObserverIdentity([1, 2, 3, 4]), 3));
        AssertRefused(peer, "observer 'ops' asked for a consensus channel");
    }

    [Fact]
    public void ObserverKeyCannotActAsANode()
    {
        using var peer = RawPeer.Connect(_serverEp);
        peer.Authenticate(Identity(2, key: TestKeys.Observer), 3);
        AssertRefused(peer, "node 2's signature does not verify");
    }

    [Fact]
    public void ObserverOnlyGetsStatus()
    {
        // Authenticated as the observer, a consensus frame instead of a status request closes the connection.
        using var peer = RawPeer.Connect(_serverEp);
        peer.Authenticate(TestKeys.ObserverIdentity([1, 2, 3, 4]), 3, ChannelPurpose.Observer);
        peer.SendBytes(peer.Encode(FrameType.Consensus, new byte[8]));
        Assert.True(peer.WaitClosed(), "an observer's consensus frame did not close the connection");
        Assert.True(_serverLog.WaitFor("expected a NodeStatusRequest frame, got Consensus"), _serverLog.ToString());
        Assert.Empty(_serverSink.Frames.Where(f => f.Peer == 0));
        AssertGoodPeerServed();
    }

    [Fact]
    public void UnknownObserverIsRefused()
    {
        using var peer = RawPeer.Connect(_serverEp);
        var stranger = TestKeys.ObserverIdentity([1, 2, 3, 4]) with { ObserverName = "stranger" };
        Assert.Throws<HandshakeException>(() => peer.Authenticate(stranger, 3, ChannelPurpose.Observer));
        AssertRefused(peer, "unknown observer 'stranger'");
    }

    [Fact]
    public void ObserverWithAnotherKeyIsRefused()
    {
        using var peer = RawPeer.Connect(_serverEp);
        peer.Authenticate(TestKeys.ObserverIdentity([1, 2, 3, 4], key: IdentityKey.Generate()), 3, ChannelPurpose.Observer);
        AssertRefused(peer, "observer 'ops''s signature does not verify");
    }

    [Fact]
    public void SyncHandshakeOnTheConsensusPortIsRefused()
    {
        using var peer = RawPeer.Connect(_serverEp);
        Assert.Throws<HandshakeException>(() => peer.Authenticate(Identity(2), 3, ChannelPurpose.Sync));
        AssertRefused(peer, "peer wants the sync channel, this is the consensus channel");
    }

    [Fact]
    public void EncryptionMismatchIsRefused()
    {
        using var peer = RawPeer.Connect(_serverEp);
        Assert.Throws<HandshakeException>(() => peer.Authenticate(TestKeys.Identity(2, [1, 2, 3, 4], encrypt: false), 3));
        AssertRefused(peer, "peer only authenticates frames, this node encrypts");
    }

    [Fact]
    public void WrongClusterIsRefused()
    {
        using var peer = RawPeer.Connect(_serverEp);
        Assert.Throws<HandshakeException>(() => peer.Authenticate(Identity(2, cluster: "other"), 3));
        AssertRefused(peer, "wrong cluster 'other'");
    }

    [Fact]
    public void UnknownNodeIdIsRefused()
    {
        using var peer = RawPeer.Connect(_serverEp);
        Assert.Throws<HandshakeException>(() => peer.Authenticate(Identity(7, members: [3, 7]), 3));
        AssertRefused(peer, "unknown node id 7");
    }

    [Fact]
    public void HigherIdDialingLowerIsRefused()
    {
        using var peer = RawPeer.Connect(_serverEp);
        Assert.Throws<HandshakeException>(() => peer.Authenticate(Identity(4), 3));
        AssertRefused(peer, "only lower ids dial higher ones");
    }

    [Fact]
    public void SilentPeerTimesOut()
    {
        using var peer = RawPeer.Connect(_serverEp);
        AssertRefused(peer, "handshake timed out");
    }

    [Fact]
    public void OversizedHandshakeFrameIsRefused()
    {
        using var peer = RawPeer.Connect(_serverEp);
        var header = new byte[5];
        BinaryPrimitives.WriteUInt32LittleEndian(header, 1 << 20);
        header[4] = (byte)FrameType.Hello;
        peer.SendBytes(header);
        AssertRefused(peer, "exceeds the limit of 4096 bytes before authentication");
    }

    [Fact]
    public void ConsensusFrameBeforeAuthenticationIsRefused()
    {
        using var peer = RawPeer.Connect(_serverEp);
        peer.SendBytes(peer.Encode(FrameType.Consensus, new byte[8]));
        AssertRefused(peer, "frame type 8 is not allowed before authentication");
    }

    /// <summary>Authenticates as node 2 with the right key and proves the link works with a ping.</summary>
    private RawPeer AuthenticatedPeer()
    {
        var peer = RawPeer.Connect(_serverEp);
        peer.Authenticate(Identity(2), 3);
        peer.SendBytes(peer.Encode(FrameType.Ping, TransportTestKit.RawBody([1, 2, 3])));
        var pong = peer.ReadFrame();
        Assert.NotNull(pong);
        Assert.Equal(FrameType.Pong, pong.Value.Type);
        return peer;
    }

    [Fact]
    public void ReplayedFrameIsRefused()
    {
        using var peer = AuthenticatedPeer();
        var frame = peer.Encode(FrameType.Ping, TransportTestKit.RawBody([9]));
        peer.SendBytes(frame);
        Assert.Equal(FrameType.Pong, peer.ReadFrame()!.Value.Type);
        peer.SendBytes(frame);   // same bytes again: old sequence number
        AssertRefused(peer, "sequence number 2, expected 3");
    }

    [Fact]
    public void BadTagIsRefused()
    {
        using var peer = AuthenticatedPeer();
        var frame = peer.Encode(FrameType.Ping, TransportTestKit.RawBody([9, 9, 9]));
        frame[^3] ^= 0x01;
        peer.SendBytes(frame);
        AssertRefused(peer, "bad authentication tag on encrypted frame 2");
    }

    [Fact]
    public void TamperedCiphertextIsRefused()
    {
        using var peer = AuthenticatedPeer();
        var frame = peer.Encode(FrameType.Ping, TransportTestKit.RawBody([9, 9, 9]));
        frame[FrameFormat.HeaderSize + 4] ^= 0x80;
        peer.SendBytes(frame);
        AssertRefused(peer, "bad authentication tag on encrypted frame 2");
    }

    [Fact]
    public void OversizedAuthenticatedFrameIsRefused()
    {
        using var peer = AuthenticatedPeer();
        var header = new byte[5];
        BinaryPrimitives.WriteUInt32LittleEndian(header, int.MaxValue);
        header[4] = (byte)FrameType.Consensus;
        peer.SendBytes(header);
        AssertRefused(peer, "exceeds the limit of");
    }

    [Fact]
    public void UnknownFrameTypeIsRefused()
    {
        using var peer = AuthenticatedPeer();
        peer.SendBytes(peer.Encode((FrameType)99, new byte[4]));
        AssertRefused(peer, "unknown or unexpected frame type 99");
    }

    [Fact]
    public void MalformedConsensusBodyIsRefused()
    {
        using var peer = AuthenticatedPeer();
        // Valid MAC, garbage protobuf (field 1 with wire type 7 does not exist).
        peer.SendBytes(peer.Encode(FrameType.Consensus, [3, 0, 0, 0, 0x0f, 0xff, 0xff]));
        AssertRefused(peer, "malformed consensus header");
    }

    [Fact]
    public void SpoofedSenderIsRefused()
    {
        using var peer = AuthenticatedPeer();
        var encoder = new ConsensusFrameEncoder().Set(new Plover.Consensus.Message
        {
            Type = Plover.Consensus.MessageType.Accept, From = 1, To = 3, Ballot = new Plover.Consensus.Ballot(1, 1),
        });
        var body = new byte[encoder.Length];
        encoder.Write(body);
        peer.SendBytes(peer.Encode(FrameType.Consensus, body));
        AssertRefused(peer, "claims to come from node 1, connection is node 2");
    }

    [Fact]
    public void TruncatedFrameIsRefused()
    {
        using var peer = AuthenticatedPeer();
        var frame = peer.Encode(FrameType.Ping, TransportTestKit.RawBody(new byte[100]));
        peer.SendBytes(frame.AsSpan(0, 40));
        peer.Socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        AssertRefused(peer, "inside a frame");
    }
}
