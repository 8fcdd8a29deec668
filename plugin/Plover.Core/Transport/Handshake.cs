using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Plover.Wire;

namespace Plover.Transport;

/// <summary>Why a connection was refused during the handshake (logged, then the socket is closed).</summary>
public sealed class HandshakeException(string message) : Exception(message);

/// <summary>
/// Who we are and whom we accept: the cluster name, our id (0 for an observer, named by ObserverName) and private
/// identity key, every node's public key by id, every observer's by name, and whether frames are encrypted.
/// </summary>
public sealed record ClusterIdentity(string Cluster, int SelfId, IdentityKey Key, IReadOnlyDictionary<int, byte[]> NodeKeys,
                                     IReadOnlyDictionary<string, byte[]>? ObserverKeys = null, bool Encrypt = true)
{
    /// <summary>A node's key before its rotation, also accepted while the rotation is under way (see the README).</summary>
    public IReadOnlyDictionary<int, byte[]>? PreviousNodeKeys { get; init; }

    /// <summary>Set when this party is an observer (SelfId 0).</summary>
    public string? ObserverName { get; init; }
}

/// <summary>An authenticated peer (PeerId 0: the observer named Observer), what it connected for, and the
/// session keys of both directions.</summary>
public sealed record HandshakeResult(int PeerId, byte[] SendKey, byte[] ReceiveKey, bool Encrypt,
                                     ChannelPurpose Purpose = ChannelPurpose.Consensus, string? Observer = null);

/// <summary>
/// Authenticated ephemeral ECDH (SIGMA style), three messages:
/// <code>
///   dialer   -> acceptor  Hello(version, cluster, purpose, encrypt, id, expected peer id, nonce, ephemeral key)
///   acceptor -> dialer    Hello(same fields), AuthProof(acceptor's signature)
///   dialer   -> acceptor  AuthProof(dialer's signature)
/// </code>
/// Each side signs, with its identity key (<see cref="IdentityKey"/>), SHA-256 of the transcript: version, purpose,
/// encrypt flag, cluster, both ids (the observer's name), both nonces and both ephemeral keys, plus which side it is
/// (no reflection). The peer checks it with the public key the config lists for that id. So a node proves exactly
/// its own id, a handshake is bound to what it is for (a consensus handshake cannot open a sync link) and to the
/// peer the dialer meant, and an old handshake cannot be replayed (fresh nonces and ephemeral keys). Session keys
/// for each direction come from HKDF-SHA256 over the ECDH secret, salted with the transcript hash: fresh per
/// connection, so the frame sequence numbers can serve as AES-GCM nonces from 1, and a stolen identity key does
/// not decrypt recorded traffic.
/// </summary>
public static class Handshake
{
    public const uint ProtocolVersion = 2;
    /// <summary>The node id of an observer (<c>plover status</c>): not a member; its Hello names it instead.</summary>
    public const int ObserverId = 0;
    public const int NonceSize = 32;
    /// <summary>An accepted connection must deliver its Hello this soon (a genuine dialer sends it at once): a silent
    /// stranger holds a handshake slot this long, not the whole handshake timeout.</summary>
    public static readonly TimeSpan HelloTimeout = TimeSpan.FromSeconds(1);

    /// <summary>SHA-256 of everything both Hellos said that the signatures must cover.</summary>
    public static byte[] Transcript(Hello dialer, Hello acceptor)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var n = new byte[4];
        void Int(long v) { BinaryPrimitives.WriteInt32LittleEndian(n, (int)v); h.AppendData(n); }
        void Bytes(ReadOnlySpan<byte> b) { Int(b.Length); h.AppendData(b); }
        void Text(string s) => Bytes(Encoding.UTF8.GetBytes(s));
        h.AppendData("plover-handshake-v2\0"u8);
        Int(dialer.ProtocolVersion);
        Text(dialer.Purpose);
        Int(dialer.Encrypt ? 1 : 0);
        Text(dialer.Cluster);
        Int(dialer.NodeId); Text(dialer.Observer);
        Int(acceptor.NodeId);
        Bytes(dialer.Nonce.Span); Bytes(acceptor.Nonce.Span);
        Bytes(dialer.EphemeralKey.Span); Bytes(acceptor.EphemeralKey.Span);
        return h.GetHashAndReset();
    }

    /// <summary>What a side signs: its side and the transcript hash.</summary>
    public static byte[] SignedData(byte[] transcript, bool dialer) =>
        [.. "plover-sign-v2\0"u8, (byte)(dialer ? 'D' : 'A'), .. transcript];

    /// <summary>The key of one direction, from the ECDH secret (each side derives both).</summary>
    public static byte[] SessionKey(byte[] secret, byte[] transcript, bool fromDialer)
    {
        var output = new byte[FrameAuthenticator.KeySize];
        HKDF.DeriveKey(HashAlgorithmName.SHA256, secret, output, transcript,
            fromDialer ? "plover-session-v2\0dialer->acceptor"u8 : "plover-session-v2\0acceptor->dialer"u8);
        return output;
    }

    /// <summary>
    /// Null if the peer's Hello is acceptable, else the reason to refuse it. weDial: we dialed expectedPeerId;
    /// otherwise we accept for purpose from expectedPeerId, or from any member with a lower id when it is 0, and
    /// (allowObserver) from a listed observer.
    /// </summary>
    public static string? CheckHello(Hello hello, ClusterIdentity self, ChannelPurpose purpose, int expectedPeerId, bool weDial,
                                     bool allowObserver = false)
    {
        if (hello.ProtocolVersion != ProtocolVersion) return $"protocol version {hello.ProtocolVersion}, expected {ProtocolVersion}";
        if (hello.Cluster != self.Cluster) return $"wrong cluster '{Printable(hello.Cluster)}' (this is '{self.Cluster}')";
        if (!ChannelPurposes.TryParse(hello.Purpose, out var theirs)) return $"unknown purpose '{Printable(hello.Purpose)}'";
        bool observer = theirs == ChannelPurpose.Observer && allowObserver && !weDial;
        if (theirs != purpose && !observer)
            return $"peer wants the {theirs.Name()} channel, this is the {purpose.Name()} channel";
        if (hello.Encrypt != self.Encrypt)
            return $"peer {(hello.Encrypt ? "encrypts" : "only authenticates")} frames, this node {(self.Encrypt ? "encrypts" : "only authenticates")} " +
                   "(\"encrypt\" must be the same in every node's config)";
        if (hello.Nonce.Length != NonceSize) return $"nonce of {hello.Nonce.Length} bytes, expected {NonceSize}";
        if (hello.EphemeralKey.Length != IdentityKey.PublicKeySize) return $"ephemeral key of {hello.EphemeralKey.Length} bytes, expected {IdentityKey.PublicKeySize}";
        if (observer)
        {
            if (hello.NodeId != ObserverId) return $"an observer must have node id {ObserverId}, not {hello.NodeId}";
            if (self.ObserverKeys?.ContainsKey(hello.Observer) != true) return $"unknown observer '{Printable(hello.Observer)}'";
        }
        else
        {
            if (hello.Observer.Length > 0) return $"observer '{Printable(hello.Observer)}' asked for a {theirs.Name()} channel (observers may only read status)";
            if (hello.NodeId == self.SelfId) return $"peer claims our own node id {hello.NodeId}";
            if (!self.NodeKeys.ContainsKey(hello.NodeId)) return $"unknown node id {hello.NodeId}";
        }
        if (weDial)
        {
            if (hello.NodeId != expectedPeerId) return $"dialed node {expectedPeerId} but node {hello.NodeId} answered";
        }
        else
        {
            if (hello.ExpectedPeerId != self.SelfId) return $"node {hello.NodeId} meant to reach node {hello.ExpectedPeerId}";
            if (observer) return null;
            if (expectedPeerId != 0 && hello.NodeId != expectedPeerId)
                return $"node {hello.NodeId} may not open a {purpose.Name()} channel here (only node {expectedPeerId} may)";
            if (hello.NodeId > self.SelfId) return $"node {hello.NodeId} dialed us, but only lower ids dial higher ones";
        }
        return null;
    }

    /// <summary>Dials: authenticates the node peerId we connected to, for purpose. Throws HandshakeException with
    /// the reason on any failure. Frames the peer sends after the handshake stay in recv.</summary>
    public static HandshakeResult Dial(Socket socket, ByteBuffer recv, FrameReader reader, FrameWriter writer,
                                       ClusterIdentity self, ChannelPurpose purpose, int peerId, TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        using var ephemeral = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        var hello = OurHello(self, purpose, peerId, ephemeral);
        var output = new ByteBuffer(1024);
        try
        {
            writer.Write(output, new ProtobufBody(FrameType.Hello, hello));
            SendAll(socket, output.Data);
            output.Clear();

            var peerHello = new Hello();
            ReadMessage(socket, recv, reader, FrameType.Hello, peerHello, deadline);
            if (CheckHello(peerHello, self, purpose, peerId, weDial: true) is { } error) throw new HandshakeException(error);
            var peerProof = new AuthProof();
            ReadMessage(socket, recv, reader, FrameType.AuthProof, peerProof, deadline);
            var transcript = Transcript(hello, peerHello);
            CheckSignature(KeysOf(self, peerId), transcript, peerProof, peerIsDialer: false, $"node {peerId}");

            writer.Write(output, new ProtobufBody(FrameType.AuthProof, Proof(self, transcript, weDial: true)));
            SendAll(socket, output.Data);
            var secret = Agree(ephemeral, peerHello);
            return new HandshakeResult(peerId, SessionKey(secret, transcript, fromDialer: true),
                SessionKey(secret, transcript, fromDialer: false), self.Encrypt, purpose);
        }
        finally
        {
            output.Dispose();
        }
    }

    /// <summary>Accepts: authenticates whoever dialed us for purpose (see <see cref="CheckHello"/> for who may).
    /// Throws HandshakeException with the reason on any failure.</summary>
    public static HandshakeResult Accept(Socket socket, ByteBuffer recv, FrameReader reader, FrameWriter writer,
                                         ClusterIdentity self, ChannelPurpose purpose, int expectedPeerId, TimeSpan timeout,
                                         bool allowObserver = false)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        var peerHello = new Hello();
        ReadMessage(socket, recv, reader, FrameType.Hello, peerHello,
            Math.Min(deadline, Environment.TickCount64 + (long)HelloTimeout.TotalMilliseconds));
        if (CheckHello(peerHello, self, purpose, expectedPeerId, weDial: false, allowObserver) is { } error) throw new HandshakeException(error);
        ChannelPurposes.TryParse(peerHello.Purpose, out var theirs);
        bool observer = theirs == ChannelPurpose.Observer;
        byte[][] peerKeys = observer ? [self.ObserverKeys![peerHello.Observer]] : KeysOf(self, peerHello.NodeId);
        string who = observer ? $"observer '{peerHello.Observer}'" : $"node {peerHello.NodeId}";

        using var ephemeral = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        var hello = OurHello(self, theirs, 0, ephemeral);
        var transcript = Transcript(peerHello, hello);
        var output = new ByteBuffer(1024);
        try
        {
            writer.Write(output, new ProtobufBody(FrameType.Hello, hello));
            writer.Write(output, new ProtobufBody(FrameType.AuthProof, Proof(self, transcript, weDial: false)));
            SendAll(socket, output.Data);

            var peerProof = new AuthProof();
            ReadMessage(socket, recv, reader, FrameType.AuthProof, peerProof, deadline);
            CheckSignature(peerKeys, transcript, peerProof, peerIsDialer: true, who);
            var secret = Agree(ephemeral, peerHello);
            return new HandshakeResult(peerHello.NodeId, SessionKey(secret, transcript, fromDialer: false),
                SessionKey(secret, transcript, fromDialer: true), self.Encrypt, theirs, observer ? peerHello.Observer : null);
        }
        finally
        {
            output.Dispose();
        }
    }

    private static Hello OurHello(ClusterIdentity self, ChannelPurpose purpose, int expectedPeerId, ECDiffieHellman ephemeral)
    {
        var q = ephemeral.ExportParameters(includePrivateParameters: false).Q;
        return new Hello
        {
            ProtocolVersion = ProtocolVersion, Cluster = self.Cluster, NodeId = self.SelfId, Observer = self.ObserverName ?? "",
            Nonce = ByteString.CopyFrom(RandomNumberGenerator.GetBytes(NonceSize)), ExpectedPeerId = expectedPeerId,
            Purpose = purpose.Name(), Encrypt = self.Encrypt, EphemeralKey = ByteString.CopyFrom([.. q.X!, .. q.Y!]),
        };
    }

    private static AuthProof Proof(ClusterIdentity self, byte[] transcript, bool weDial) =>
        new() { Signature = ByteString.CopyFrom(self.Key.Sign(SignedData(transcript, weDial))) };

    /// <summary>The public keys node id may prove: its publicKey, and its previousPublicKey during a rotation.</summary>
    private static byte[][] KeysOf(ClusterIdentity self, int id) =>
        self.PreviousNodeKeys?.TryGetValue(id, out var previous) == true ? [self.NodeKeys[id], previous] : [self.NodeKeys[id]];

    private static void CheckSignature(byte[][] peerKeys, byte[] transcript, AuthProof proof, bool peerIsDialer, string who)
    {
        var signed = SignedData(transcript, peerIsDialer);
        if (!peerKeys.Any(k => IdentityKey.Verify(k, signed, proof.Signature.Span)))
            throw new HandshakeException($"authentication failed: {who}'s signature does not verify with its publicKey in the config " +
                                         "(wrong key file, or a stale config?)");
    }

    private static byte[] Agree(ECDiffieHellman ephemeral, Hello peer)
    {
        try
        {
            using var theirs = ECDiffieHellman.Create(IdentityKey.PublicParameters(peer.EphemeralKey.ToByteArray()));
            return ephemeral.DeriveRawSecretAgreement(theirs.PublicKey);
        }
        catch (CryptographicException e)
        {
            throw new HandshakeException($"bad ephemeral key: {e.Message}");
        }
    }

    internal static void ReadMessage(Socket socket, ByteBuffer recv, FrameReader reader, FrameType type, IMessage into, long deadline)
    {
        while (true)
        {
            var status = reader.TryRead(recv.Data, out var frame, out int consumed, out int needed);
            if (status == FrameStatus.Invalid) throw new HandshakeException(reader.Error!);
            if (status == FrameStatus.Complete)
            {
                if (frame.Type != type) throw new HandshakeException($"expected a {type} frame, got {frame.Type}");
                if (!frame.Tail.IsEmpty) throw new HandshakeException($"{type} frame has {frame.Tail.Length} unexpected trailing bytes");
                try { into.MergeFrom(frame.Header); }
                catch (InvalidProtocolBufferException e) { throw new HandshakeException($"malformed {type}: {e.Message}"); }
                recv.Consume(consumed);
                return;
            }
            long left = deadline - Environment.TickCount64;
            if (left <= 0) throw new HandshakeException("handshake timed out");
            socket.ReceiveTimeout = (int)Math.Max(1, left);
            recv.EnsureContiguous(needed);
            var space = recv.GetSpace(Math.Max(needed - recv.Count, 512));
            int n;
            try { n = socket.Receive(space); }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut || e.SocketErrorCode == SocketError.WouldBlock)
            { throw new HandshakeException("handshake timed out"); }
            catch (SocketException e) { throw new HandshakeException($"connection lost during handshake: {e.SocketErrorCode}"); }
            // The acceptor checks the dialer's signature last and says nothing to a peer it refuses: its log has the reason.
            if (n == 0) throw new HandshakeException("peer closed the connection during the handshake (it refused us: does its config " +
                                                     "list this node's publicKey and the same cluster and encrypt? see its log)");
            recv.Commit(n);
        }
    }

    internal static void SendAll(Socket socket, ReadOnlySpan<byte> data)
    {
        try
        {
            while (!data.IsEmpty) data = data[socket.Send(data)..];
        }
        catch (SocketException e) { throw new HandshakeException($"connection lost during handshake: {e.SocketErrorCode}"); }
    }

    private static string Printable(string s)
    {
        if (s.Length > 64) s = s[..64] + "...";
        var b = new StringBuilder(s.Length);
        foreach (char c in s) b.Append(char.IsControl(c) ? '?' : c);
        return b.ToString();
    }
}
