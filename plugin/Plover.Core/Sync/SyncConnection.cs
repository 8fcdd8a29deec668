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
/// (<see cref="UcxBootstrap"/>); the socket then only tells when the peer is gone.
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
            if (ucx is not null) _ucx = UcxBootstrap.Exchange(socket, _recv, _reader, _writer, ucx, timeout);
        }
        catch
        {
            socket.Dispose();
            _recv.Dispose();
            _send.Dispose();
            throw;
        }
    }

    public int PeerId { get; }
    public bool IsClosed => _closed;

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
        _ucx?.Dispose();
        try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception) { /* already gone */ }
        _socket.Dispose();
    }
}
