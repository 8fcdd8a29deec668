using System.Net;
using System.Net.Sockets;
using Plover.Metrics;
using Plover.Transport;
using Plover.Transport.Ucx;

namespace Plover.Sync;

/// <summary>The sync connection failed: the peer closed it, it timed out, or the peer broke the protocol.</summary>
public sealed class SyncConnectionException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The authenticated TCP connection between the primary's and the backup's sync engines, separate from the
/// consensus transport so multi-megabyte page transfers never delay heartbeats. Built from the transport's
/// pieces: the identity handshake with purpose sync (only between the two VM nodes: each side names the other),
/// then sequence-numbered frames, AES-GCM encrypted (pages and device state are guest secrets) unless the config
/// says authentication only. Used by one engine thread
/// at a time with blocking reads (each sync phase sends in one direction only, so this cannot deadlock);
/// <see cref="Dispose"/> may be called from any thread and makes a blocked read or send fail at once.
/// Given a UCX worker ("transport": "ucx"), the frames after the handshake travel over a UCX endpoint instead
/// (<see cref="UcxBootstrap"/>); the socket then only tells when the peer is gone. Frames of 16 KiB and more (pages)
/// are then written one-sided into the peer's ring and announced by a SyncPut frame (<see cref="UcxFrameRing"/>).
/// </summary>
public sealed class SyncConnection : IDisposable
{
    private const int SocketBufferBytes = 4 << 20;
    private readonly Socket _socket;
    private readonly FrameReader _reader = new();
    private readonly FrameWriter _writer = new();
    private readonly ByteBuffer _recv = new(4 << 20);
    private readonly ByteBuffer _send = new(2 << 20);
    private readonly FrameAuthenticator _sendAuth;
    private readonly FrameAuthenticator _recvAuth;
    private readonly UcxStream? _ucx;
    private readonly UcxFrameRing? _ring;
    private readonly ByteBuffer? _put;     // a frame on its way into the peer's ring
    private readonly ByteBuffer? _taken;   // authentication only: a frame from our ring, copied out (its spans outlive the read)
    private UcxRemoteWriter? _staging;    // primary, page puts: the backup's staging region (kept while its key is the same)
    private byte[]? _stagingKey;
    private ulong _stagingAddress, _stagingLength;
    private bool _releaseRing;             // the last frame read came from the ring: tell the peer once it is consumed
    private int _pendingConsume;
    private volatile bool _closed;

    private SyncConnection(Socket socket, ClusterIdentity self, bool dial, int expectedPeer, TimeSpan timeout, WireTraffic? wire, UcxWorker? ucx)
    {
        _socket = socket;
        _reader.Stats = _writer.Stats = wire;
        _reader.Channel = _writer.Channel = WireChannel.SyncLink;
        socket.NoDelay = true;
        socket.SendBufferSize = SocketBufferBytes;
        socket.ReceiveBufferSize = SocketBufferBytes;
        socket.SendTimeout = 10_000;
        try
        {
            var result = dial
                ? Handshake.Dial(socket, _recv, _reader, _writer, self, ChannelPurpose.Sync, expectedPeer, timeout)
                : Handshake.Accept(socket, _recv, _reader, _writer, self, ChannelPurpose.Sync, expectedPeer, timeout);
            PeerId = result.PeerId;
            _sendAuth = new FrameAuthenticator(result.SendKey, result.Encrypt);
            _recvAuth = new FrameAuthenticator(result.ReceiveKey, result.Encrypt);
            _writer.Authenticate(_sendAuth);
            _reader.Authenticate(_recvAuth);
            if (ucx is not null && ucx.Settings.OneSided)
            {
                _ring = new UcxFrameRing(ucx, UcxFrameRing.DefaultRingBytes);
                _put = new ByteBuffer(1 << 20);
                _taken = new ByteBuffer(1 << 20);
            }
            if (ucx is not null) _ucx = UcxBootstrap.Exchange(socket, _recv, _reader, _writer, ucx, timeout, _ring);
            Ucx = ucx;
            PeerGone = PeerHasClosed;
        }
        catch
        {
            _ring?.Dispose();
            _ring?.Free();
            _put?.Dispose();
            _taken?.Dispose();
            socket.Dispose();
            _recv.Dispose();
            _send.Dispose();
            throw;
        }
    }

    public int PeerId { get; }
    public bool IsClosed => _closed;
    /// <summary>The UCX worker the frames travel on (null: TCP). Both ends of a link agree on it.</summary>
    public UcxWorker? Ucx { get; }
    /// <summary><see cref="PeerHasClosed"/> as one delegate (a flush of page puts checks it while it waits).</summary>
    public Func<bool> PeerGone { get; } = null!;

    /// <summary>
    /// Primary, page puts: a writer into the backup's staging region (what its SyncStaging named), unpacked on this
    /// connection's endpoint. Kept across syncs while the backup offers the same key, address and length (it
    /// registers again only when its buffer grows); freed with the connection. Throws IOException if the key does
    /// not unpack.
    /// </summary>
    /// <summary>Tests: make the next staging key fail to unpack (UCX 1.13 over TCP unpacks any bytes: its TCP
    /// transport needs no key, so a key that fails can only be played).</summary>
    internal bool RefuseStagingKey { get; set; }

    public UcxRemoteWriter StagingWriter(ReadOnlySpan<byte> key, ulong address, ulong length)
    {
        if (_ucx is null) throw new InvalidOperationException("page puts need a UCX connection");
        if (RefuseStagingKey) throw new IOException("UCX remote key unpack failed: refused by a test");
        if (_staging is not null && address == _stagingAddress && length == _stagingLength && key.SequenceEqual(_stagingKey))
            return _staging;
        _staging?.Dispose();
        _staging = null;
        _staging = new UcxRemoteWriter(_ucx, key, address, length);
        (_stagingKey, _stagingAddress, _stagingLength) = (key.ToArray(), address, length);
        return _staging;
    }
    /// <summary>Frames (and their bytes) that arrived one-sided in our ring rather than on the stream (UCX only).</summary>
    public long OneSidedFrames { get; private set; }
    public long OneSidedBytes { get; private set; }

    /// <summary>Longest a send may block on a peer that stopped reading (then the connection is closed).</summary>
    public TimeSpan SendTimeout
    {
        get => TimeSpan.FromMilliseconds(_socket.SendTimeout);
        set => _socket.SendTimeout = (int)Math.Clamp(value.TotalMilliseconds, 1, int.MaxValue);
    }

    // Connect and Accept are the blocking calls (a timer, a poll for the timeouts), never the async ones: a socket that
    // has seen an async operation is non-blocking for good, and .NET then emulates every blocking Receive that has to
    // wait with an operation object and an event, an allocation per frame.

    /// <summary>Dials peerId at endpoint and authenticates (only a lower node id dials a higher one).</summary>
    public static SyncConnection Connect(IPEndPoint endpoint, ClusterIdentity self, int peerId, TimeSpan timeout, WireTraffic? wire = null,
                                         UcxWorker? ucx = null)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        bool timedOut = false;
        try
        {
            // The timer closes the socket under a connect that takes too long.
            using (new Timer(_ => { Volatile.Write(ref timedOut, true); socket.Dispose(); }, null, timeout, Timeout.InfiniteTimeSpan))
                socket.Connect(endpoint);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            socket.Dispose();
            throw new SyncConnectionException(Volatile.Read(ref timedOut)
                ? $"connecting to node {peerId} at {endpoint} timed out"
                : $"cannot connect to node {peerId} at {endpoint}: {e.Message}", e);
        }
        return new SyncConnection(socket, self, dial: true, peerId, timeout, wire, ucx);
    }

    /// <summary>Accepts one connection on listener and authenticates it as node peerId, the other VM node (a
    /// HandshakeException names the reason to refuse: any other node, observer or purpose is refused).</summary>
    public static SyncConnection Accept(Socket listener, ClusterIdentity self, int peerId, TimeSpan timeout, WireTraffic? wire = null,
                                        UcxWorker? ucx = null)
    {
        if (!listener.Poll(timeout, SelectMode.SelectRead)) throw new SyncConnectionException("no sync connection arrived in time");
        return AcceptFrom(listener.Accept(), self, peerId, timeout, wire, ucx);
    }

    /// <summary>Authenticates an accepted socket as node peerId (closes it and throws on refusal).</summary>
    public static SyncConnection AcceptFrom(Socket accepted, ClusterIdentity self, int peerId, TimeSpan timeout, WireTraffic? wire = null,
                                            UcxWorker? ucx = null) =>
        new(accepted, self, dial: false, peerId, timeout, wire, ucx);

    /// <summary>Bytes this body occupies on the wire as a frame (header and MAC included).</summary>
    public int WireSize(IFrameBody body) => _writer.FrameSize(body.Length);

    /// <summary>Sends one frame (blocking until the kernel took it all); returns its size on the wire.</summary>
    public int Send(IFrameBody body)
    {
        if (_closed) throw new SyncConnectionException("the sync connection is closed");
        _send.Clear();
        if (_ring is not null && WireSize(body) is var size && size >= UcxFrameRing.MinPutFrameBytes && size <= _ring.MaxPutFrameBytes)
            return SendOneSided(body, size);
        _writer.Write(_send, body);
        var data = _send.Data;
        try
        {
            if (_ucx is not null) _ucx.Send(data, _socket.SendTimeout);
            else while (!data.IsEmpty) data = data[_socket.Send(data)..];
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            Dispose();
            throw new SyncConnectionException($"connection to node {PeerId} lost while sending: {e.Message}", e);
        }
        return _send.Count;
    }

    /// <summary>Puts the frame into the peer's ring, then announces it: the announcement takes the sequence number
    /// before the frame's, so the peer verifies both in order.</summary>
    private int SendOneSided(IFrameBody body, int size)
    {
        Span<byte> announcement = stackalloc byte[UcxFrameRing.AnnouncementBytes];
        UcxFrameRing.WriteAnnouncement(announcement, _ring!.PositionFor(size), (ulong)size);
        _writer.Write(_send, FrameType.SyncPut, announcement);
        _put!.Clear();
        _writer.Write(_put, body);
        try
        {
            _ring.Put(_put.Data, _socket.SendTimeout);
            _ucx!.Send(_send.Data, _socket.SendTimeout);
        }
        catch (IOException e)
        {
            Dispose();
            throw new SyncConnectionException($"connection to node {PeerId} lost while sending: {e.Message}", e);
        }
        return size;
    }

    /// <summary>
    /// Waits for the next verified frame. Its spans point into the receive buffer and stay valid until the next
    /// call. A forged or malformed stream closes the connection and throws with the reason.
    /// </summary>
    public Frame Read(TimeSpan timeout)
    {
        if (_pendingConsume > 0)
        {
            _recv.Consume(_pendingConsume);
            _pendingConsume = 0;
        }
        if (_releaseRing)
        {
            _releaseRing = false;
            try { _ring!.Release(); }
            catch (IOException e)
            {
                Dispose();
                throw new SyncConnectionException($"connection to node {PeerId} lost: {e.Message}", e);
            }
        }
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (true)
        {
            if (_closed) throw new SyncConnectionException("the sync connection is closed");
            var status = _reader.TryRead(_recv.Data, out var frame, out int consumed, out int needed);
            if (status == FrameStatus.Invalid)
            {
                string reason = _reader.Error ?? "invalid frame";
                Dispose();
                throw new SyncConnectionException($"node {PeerId} sent a bad frame: {reason}");
            }
            if (status == FrameStatus.Complete)
            {
                if (frame.Type == FrameType.SyncPut)
                {
                    bool wellFormed = frame.Tail.Length == 16 && frame.Header.IsEmpty;
                    ulong position = wellFormed ? System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(frame.Tail) : 0;
                    ulong length = wellFormed ? System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(frame.Tail[8..]) : 0;
                    return ReadOneSided(wellFormed, position, length, consumed);
                }
                _pendingConsume = consumed;
                return frame;
            }
            long left = deadline - Environment.TickCount64;
            if (left <= 0) throw new SyncConnectionException($"timed out waiting for node {PeerId}");
            _recv.EnsureContiguous(needed);
            var space = _recv.GetSpace(Math.Max(needed - _recv.Count, 256 << 10));
            int n;
            try
            {
                if (_ucx is not null)
                {
                    n = _ucx.Receive(space, (int)Math.Min(left, 50));
                    if (n == 0)
                    {
                        if (PeerHasClosed()) throw new IOException("the peer closed the connection");
                        continue;
                    }
                }
                else
                {
                    _socket.ReceiveTimeout = (int)Math.Min(left, int.MaxValue);
                    n = _socket.Receive(space);
                }
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
            {
                throw new SyncConnectionException($"timed out waiting for node {PeerId}");
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
            {
                Dispose();
                throw new SyncConnectionException($"connection to node {PeerId} lost: {e.Message}", e);
            }
            if (n == 0)
            {
                Dispose();
                throw new SyncConnectionException($"node {PeerId} closed the sync connection");
            }
            _recv.Commit(n);
        }
    }

    /// <summary>The frame a SyncPut announced, verified where the peer wrote it in our ring (valid until the next read).</summary>
    private Frame ReadOneSided(bool wellFormed, ulong position, ulong length, int consumed)
    {
        string? problem = null;
        if (_ring is null) problem = "a one-sided frame on a connection without a ring";
        else if (!wellFormed) problem = "a malformed SyncPut frame";
        if (problem is null)
        {
            _recv.Consume(consumed);
            try
            {
                // The frame is verified (and decrypted, out of the ring) under the ring's gate, so a Dispose from another
                // thread cannot free the ring meanwhile; authenticated-only frames are copied out first, since their
                // spans would otherwise point into the ring after the read.
                FrameStatus status;
                Frame frame;
                int used;
                lock (_ring!.Gate)
                {
                    var data = _ring.Take(position, length);
                    if (!_recvAuth.Encrypts)
                    {
                        _taken!.Clear();
                        data.CopyTo(_taken.Append(data.Length));
                        data = _taken.Data;
                    }
                    status = _reader.TryRead(data, out frame, out used, out _);
                }
                if (status == FrameStatus.Complete && (ulong)used == length && frame.Type != FrameType.SyncPut)
                {
                    _releaseRing = true;
                    OneSidedFrames++;
                    OneSidedBytes += used;
                    return frame;
                }
                problem = status == FrameStatus.Invalid ? _reader.Error : $"the one-sided frame at {position} is not one whole frame of {length} bytes";
            }
            catch (InvalidDataException e) { problem = e.Message; }
            catch (IOException e)
            {
                Dispose();
                throw new SyncConnectionException($"connection to node {PeerId} lost: {e.Message}", e);
            }
        }
        Dispose();
        throw new SyncConnectionException($"node {PeerId} sent a bad frame: {problem}");
    }

    /// <summary>Closes the socket (any thread). Buffers are kept until the engine thread is done with them.</summary>
    /// <summary>True if the peer closed the connection (a readable socket with nothing to read). Only meaningful
    /// while nobody reads it: the engine calls it between syncs.</summary>
    public bool PeerHasClosed()
    {
        if (_closed || _ucx is { IsClosed: true }) return true;
        try { return _socket.Poll(0, SelectMode.SelectRead) && _socket.Available == 0; }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { return true; }
    }

    public void Dispose()
    {
        if (_closed) return;
        _closed = true;
        _ring?.Dispose();
        _staging?.Dispose();   // (a put in progress on another thread fails: the writer checks under the stream's lock)
        _ucx?.Dispose();   // the endpoint goes: the peer can no longer write into the ring
        _ring?.Free();
        try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception) { /* already gone */ }
        _socket.Dispose();
    }
}
