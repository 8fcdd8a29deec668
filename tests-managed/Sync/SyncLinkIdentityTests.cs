using System.Net;
using System.Net.Sockets;
using Plover.Sync;
using Plover.Tests.Transport;
using Plover.Transport;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>The sync link admits exactly the other VM node: node 2 accepts node 1 only. The witness (with its own
/// key, or claiming node 1's id), an observer and a consensus handshake are refused, each with its reason.</summary>
public sealed class SyncLinkIdentityTests : IDisposable
{
    private static readonly int[] Members = [1, 2, 3];
    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);

    public SyncLinkIdentityTests()
    {
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(4);
    }

    public void Dispose() => _listener.Dispose();

    private IPEndPoint Endpoint => (IPEndPoint)_listener.LocalEndPoint!;

    /// <summary>Node 2's accept of node 1, against a raw dialer doing dial; returns the accept's refusal.</summary>
    private string Refusal(Action<RawPeer> dial)
    {
        var accept = Task.Run(() => SyncConnection.Accept(_listener, TestKeys.Identity(2, Members), 1, TimeSpan.FromSeconds(3)));
        using (var peer = RawPeer.Connect(Endpoint))
        {
            try { dial(peer); } catch (HandshakeException) { /* refused before the dialer finished: fine */ }
            var e = Assert.ThrowsAny<Exception>(() => accept.GetAwaiter().GetResult());
            Assert.True(peer.WaitClosed(), "the refused connection stayed open");
            return e.Message;
        }
    }

    [Fact]
    public void TheOtherVmNodeIsAccepted()
    {
        var accept = Task.Run(() => SyncConnection.Accept(_listener, TestKeys.Identity(2, Members), 1, TimeSpan.FromSeconds(3)));
        using var dialed = SyncConnection.Connect(Endpoint, TestKeys.Identity(1, Members), 2, TimeSpan.FromSeconds(3));
        using var accepted = accept.GetAwaiter().GetResult();
        Assert.Equal(1, accepted.PeerId);
        Assert.Equal(2, dialed.PeerId);
    }

    [Fact]
    public void DuringARotationANodesPreviousKeyIsAccepted()
    {
        // Node 2's config already lists node 1's new key, with the old one as previousPublicKey; node 1 still runs
        // with its old key. Without previousPublicKey the same handshake is refused.
        var keys = TestKeys.NodeKeys(Members);
        keys[1] = IdentityKey.Generate().PublicKey;
        var rotating = new ClusterIdentity("test", 2, TestKeys.Node(2), keys) { PreviousNodeKeys = new Dictionary<int, byte[]> { [1] = TestKeys.Node(1).PublicKey } };
        var accept = Task.Run(() => SyncConnection.Accept(_listener, rotating, 1, TimeSpan.FromSeconds(3)));
        using var dialed = SyncConnection.Connect(Endpoint, TestKeys.Identity(1, Members), 2, TimeSpan.FromSeconds(3));
        using var accepted = accept.GetAwaiter().GetResult();
        Assert.Equal(1, accepted.PeerId);

        var strict = rotating with { PreviousNodeKeys = null };
        accept = Task.Run(() => SyncConnection.Accept(_listener, strict, 1, TimeSpan.FromSeconds(3)));
        using var refused = RawPeer.Connect(Endpoint);
        refused.Authenticate(TestKeys.Identity(1, Members), 2, ChannelPurpose.Sync);
        Assert.Contains("node 1's signature does not verify", Assert.ThrowsAny<Exception>(() => accept.GetAwaiter().GetResult()).Message);
    }

    [Fact]
    public void TheWitnessIsRefused() =>
        Assert.Contains("node 3 may not open a sync channel here (only node 1 may)",
            Refusal(p => p.Authenticate(TestKeys.Identity(3, Members), 2, ChannelPurpose.Sync)));

    [Fact]
    public void TheWitnessKeyCannotPassForNode1() =>
        Assert.Contains("node 1's signature does not verify",
            Refusal(p => p.Authenticate(TestKeys.Identity(1, Members, key: TestKeys.Node(3)), 2, ChannelPurpose.Sync)));

    [Fact]
    public void AnObserverIsRefused() =>
        Assert.Contains("peer wants the observer channel, this is the sync channel",
            Refusal(p => p.Authenticate(TestKeys.ObserverIdentity(Members), 2, ChannelPurpose.Observer)));

    [Fact]
    public void AConsensusHandshakeIsRefused() =>
        Assert.Contains("peer wants the consensus channel, this is the sync channel",
            Refusal(p => p.Authenticate(TestKeys.Identity(1, Members), 2, ChannelPurpose.Consensus)));

    [Fact]
    public void SignaturesAreBoundToThePurpose()
    {
        // A consensus handshake's signature, replayed in a sync handshake with otherwise identical messages, fails.
        var key = TestKeys.Node(1);
        var dialer = new Wire.Hello
        {
            ProtocolVersion = Handshake.ProtocolVersion, Cluster = "test", NodeId = 1, ExpectedPeerId = 2, Purpose = "consensus",
            Encrypt = true, Nonce = Google.Protobuf.ByteString.CopyFrom(new byte[32]), EphemeralKey = Google.Protobuf.ByteString.CopyFrom(new byte[64]),
        };
        var acceptor = new Wire.Hello { NodeId = 2, Nonce = dialer.Nonce, EphemeralKey = dialer.EphemeralKey };
        var signature = key.Sign(Handshake.SignedData(Handshake.Transcript(dialer, acceptor), dialer: true));
        Assert.True(IdentityKey.Verify(key.PublicKey, Handshake.SignedData(Handshake.Transcript(dialer, acceptor), true), signature));
        var sync = dialer.Clone();
        sync.Purpose = "sync";
        Assert.False(IdentityKey.Verify(key.PublicKey, Handshake.SignedData(Handshake.Transcript(sync, acceptor), true), signature));
        // and to the side: a dialer's signature is no acceptor's
        Assert.False(IdentityKey.Verify(key.PublicKey, Handshake.SignedData(Handshake.Transcript(dialer, acceptor), false), signature));
    }
}
