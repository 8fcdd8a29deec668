using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Plover.Wire;

namespace Plover.Transport;

/// <summary>Why a connection was refused during the handshake (logged, then the socket is closed).</summary>
public sealed class HandshakeException(string message) : Exception(message);

/// <summary>Who we are and whom we accept: the cluster name, the shared key and the member ids.</summary>
public sealed record ClusterIdentity(string Cluster, byte[] Key, int SelfId, IReadOnlyCollection<int> Members);

/// <summary>An authenticated peer and the session keys of both directions.</summary>
public sealed record HandshakeResult(int PeerId, byte[] SendKey, byte[] ReceiveKey);

/// <summary>
/// Mutual challenge-response with the cluster key. Both sides send Hello (cluster, node id, 32-byte nonce),
/// check the peer's Hello, then send AuthProof = HMAC-SHA256(key, "plover-auth-v1" | cluster | prover id |
/// verifier id | prover nonce | verifier nonce) and check the peer's. The proof binds both nonces (no replay of an
/// old handshake), both ids in a fixed role order (no reflection) and the cluster name. Session keys for each
/// direction come from HKDF-SHA256 over the cluster key, salted with both nonces, so every connection has
/// fresh keys and its GMAC nonces (the sequence numbers) can start at 1.
/// </summary>
public static class Handshake
{
    public const uint ProtocolVersion = 1;
    /// <summary>The node id of an observer (<c>plover status</c>): it proves the cluster key like a node, is not a
    /// member, and a node accepting it answers status requests only.</summary>
    public const int ObserverId = 0;
    public const int NonceSize = 32;
    public const int ProofSize = 32;

    /// <summary>The proof that prover knows the key, for this exchange of nonces.</summary>
    public static byte[] Proof(byte[] key, string cluster, int proverId, int verifierId, ReadOnlySpan<byte> proverNonce, ReadOnlySpan<byte> verifierNonce)
    {
        var label = "plover-auth-v1\0"u8;
        var name = Encoding.UTF8.GetBytes(cluster);
        var transcript = new byte[label.Length + 4 + name.Length + 8 + proverNonce.Length + verifierNonce.Length];
        var s = transcript.AsSpan();
        label.CopyTo(s); s = s[label.Length..];
        BinaryPrimitives.WriteInt32LittleEndian(s, name.Length); s = s[4..];
        name.CopyTo(s); s = s[name.Length..];
        BinaryPrimitives.WriteInt32LittleEndian(s, proverId);
        BinaryPrimitives.WriteInt32LittleEndian(s[4..], verifierId); s = s[8..];
        proverNonce.CopyTo(s); s = s[proverNonce.Length..];
        verifierNonce.CopyTo(s);
        return HMACSHA256.HashData(key, transcript);
    }

    /// <summary>The key of the direction from -> to (each side derives both).</summary>
    public static byte[] SessionKey(byte[] key, string cluster, int fromId, int toId, int selfId, ReadOnlySpan<byte> selfNonce, ReadOnlySpan<byte> peerNonce)
    {
        // Salt: the lower id's nonce first, so both sides build the same bytes.
        var salt = new byte[selfNonce.Length + peerNonce.Length];
        bool selfLow = selfId < (selfId == fromId ? toId : fromId);
        (selfLow ? selfNonce : peerNonce).CopyTo(salt);
        (selfLow ? peerNonce : selfNonce).CopyTo(salt.AsSpan(NonceSize));
        var info = Encoding.UTF8.GetBytes($"plover-session-v1\0{cluster}\0{fromId}->{toId}");
        var output = new byte[FrameAuthenticator.KeySize];
        HKDF.DeriveKey(HashAlgorithmName.SHA256, key, output, salt, info);
        return output;
    }

    /// <summary>Null if the peer's Hello is acceptable, else the reason to refuse it.</summary>
    public static string? CheckHello(Hello hello, ClusterIdentity self, int expectedPeerId, bool allowObserver = false)
    {
        if (hello.ProtocolVersion != ProtocolVersion) return $"protocol version {hello.ProtocolVersion}, expected {ProtocolVersion}";
        if (hello.Cluster != self.Cluster) return $"wrong cluster '{Printable(hello.Cluster)}' (this is '{self.Cluster}')";
        if (hello.NodeId == self.SelfId) return $"peer claims our own node id {hello.NodeId}";
        bool observer = hello.NodeId == ObserverId && allowObserver && expectedPeerId == 0;
        if (!observer && !self.Members.Contains(hello.NodeId)) return $"unknown node id {hello.NodeId}";
        if (hello.Nonce.Length != NonceSize) return $"nonce of {hello.Nonce.Length} bytes, expected {NonceSize}";
        if (expectedPeerId != 0)
        {
            if (hello.NodeId != expectedPeerId) return $"dialed node {expectedPeerId} but node {hello.NodeId} answered";
        }
        else
        {
            if (hello.ExpectedPeerId != self.SelfId) return $"node {hello.NodeId} meant to reach node {hello.ExpectedPeerId}";
            if (hello.NodeId > self.SelfId) return $"node {hello.NodeId} dialed us, but only lower ids dial higher ones";
        }
        return null;
    }

    /// <summary>
    /// Runs the handshake on a connected blocking socket. Frames the peer sends after its proof stay in recv
    /// for the connection's reader. Throws HandshakeException with the reason on any failure.
    /// </summary>
    public static HandshakeResult Run(Socket socket, ByteBuffer recv, FrameReader reader, FrameWriter writer,
                                      ClusterIdentity self, int expectedPeerId, TimeSpan timeout, bool allowObserver = false)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        var selfNonce = RandomNumberGenerator.GetBytes(NonceSize);
        var hello = new Hello
        {
            ProtocolVersion = ProtocolVersion, Cluster = self.Cluster, NodeId = self.SelfId,
            Nonce = ByteString.CopyFrom(selfNonce), ExpectedPeerId = expectedPeerId,
        };
        var output = new ByteBuffer(1024);
        try
        {
            writer.Write(output, new ProtobufBody(FrameType.Hello, hello));
            SendAll(socket, output.Data);
            output.Clear();

            var peerHello = new Hello();
            ReadMessage(socket, recv, reader, FrameType.Hello, peerHello, deadline);
            if (CheckHello(peerHello, self, expectedPeerId, allowObserver) is { } error) throw new HandshakeException(error);
            int peer = peerHello.NodeId;
            var peerNonce = peerHello.Nonce.ToByteArray();

            var proof = Proof(self.Key, self.Cluster, self.SelfId, peer, selfNonce, peerNonce);
            writer.Write(output, new ProtobufBody(FrameType.AuthProof, new AuthProof { Mac = ByteString.CopyFrom(proof) }));
            SendAll(socket, output.Data);

            var peerProof = new AuthProof();
            ReadMessage(socket, recv, reader, FrameType.AuthProof, peerProof, deadline);
            var expected = Proof(self.Key, self.Cluster, peer, self.SelfId, peerNonce, selfNonce);
            if (!CryptographicOperations.FixedTimeEquals(expected, peerProof.Mac.Span))
                throw new HandshakeException($"authentication failed: bad proof from node {peer} (wrong cluster key?)");

            return new HandshakeResult(peer,
                SessionKey(self.Key, self.Cluster, self.SelfId, peer, self.SelfId, selfNonce, peerNonce),
                SessionKey(self.Key, self.Cluster, peer, self.SelfId, self.SelfId, selfNonce, peerNonce));
        }
        finally
        {
            output.Dispose();
        }
    }

    private static void ReadMessage(Socket socket, ByteBuffer recv, FrameReader reader, FrameType type, IMessage into, long deadline)
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
            if (n == 0) throw new HandshakeException("peer closed the connection during the handshake");
            recv.Commit(n);
        }
    }

    private static void SendAll(Socket socket, ReadOnlySpan<byte> data)
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
