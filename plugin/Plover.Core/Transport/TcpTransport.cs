using System.Net;
using System.Net.Sockets;
using Plover.Platform;

namespace Plover.Transport;

/// <summary>
/// <see cref="ITransport"/> over TCP: one connection per pair of nodes, the lower id dials the higher one
/// (so there is never a duplicate to break ties on), TCP_NODELAY, mutual authentication of the node ids
/// (<see cref="Handshake"/>, purpose consensus; observers get status only) and an AES-GCM tag on every frame, whose
/// body is encrypted unless the config says authentication only. Dialers reconnect with exponential backoff. Threads:
/// one acceptor, one dialer per higher peer, and per connection one reader (the thread that ran its handshake)
/// and one writer. Anything a peer does wrong closes that connection with a logged reason; nothing here throws
/// into the caller after <see cref="Start"/>.
/// With "transport": "ucx" (<see cref="TcpTransportOptions.Ucx"/>) the connection setup is the same, and right after
/// the handshake the frames move onto a UCX endpoint (<see cref="Ucx.UcxBootstrap"/>, <see cref="Ucx.UcxConnection"/>):
/// the same framing, keys and sequence numbers, on RDMA verbs where the host has them.
/// </summary>
public sealed class TcpTransport : ITransport
{
    private readonly TcpTransportOptions _options;
    private readonly ClusterIdentity _self;
    private readonly int[] _peers;
    private readonly PeerConnection?[] _connections;
    private readonly object _connectionsLock = new();
    private readonly List<Thread> _threads = new();
    private Socket? _listener;
    private Ucx.UcxWorker? _ucx;                   // set when the config says "transport": "ucx"
    private IFrameSink _sink = null!;
    private readonly HandshakeSlots _slots;
    private volatile bool _disposed;
    private readonly string?[] _problems;          // per peer: why it is not connected, last seen
    private volatile string? _inboundProblem;      // the last refused incoming connection (peer not yet known)
    // Refused connections are logged at most 10 per 10 s: strangers must not be able to fill the log.
    private readonly LogRateLimiter _refusals = new(10, TimeSpan.FromSeconds(10));

    public TcpTransport(TcpTransportOptions options)
    {
        _options = options;
        _self = options.Identity;
        if (!options.Endpoints.ContainsKey(_self.SelfId)) throw new ArgumentException($"no endpoint for this node ({_self.SelfId})");
        foreach (int id in options.Endpoints.Keys)
            if (id <= 0 || id > 65535) throw new ArgumentException($"node id {id} must be in 1..65535");
        if (options.MaxFrameBytes < FrameFormat.MaxHandshakeFrameBytes) throw new ArgumentException("MaxFrameBytes too small");
        _peers = options.Endpoints.Keys.Where(id => id != _self.SelfId).Order().ToArray();
        _connections = new PeerConnection?[options.Endpoints.Keys.Max() + 1];
        _problems = new string?[_connections.Length];
        Traffic = options.Traffic ?? new Metrics.WireTraffic();
        _slots = new HandshakeSlots(options.MaxPendingHandshakes, options.MaxPendingHandshakesPerSource);
    }

    public int SelfId => _self.SelfId;
    public IReadOnlyList<int> Peers => _peers;
    /// <summary>Every frame this node sent and received on its consensus port (peers and observers).</summary>
    public Metrics.WireTraffic Traffic { get; }
    /// <summary>The bound listening address (useful with port 0).</summary>
    public IPEndPoint? LocalEndpoint => _listener?.LocalEndPoint as IPEndPoint;

    public void Start(IFrameSink sink)
    {
        _sink = sink;
        if (_options.Ucx is { } ucx) _ucx = new Ucx.UcxWorker(ucx, $"consensus-{_self.SelfId}", _options.Log);
        var ep = _options.ListenEndpoint ?? _options.Endpoints[_self.SelfId];
        var listener = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(ep);
            listener.Listen(64);
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new IOException($"cannot listen on {ep}: {e.Message}", e);
        }
        _listener = listener;
        StartThread(AcceptLoop, "plover-tcp-accept");
        foreach (int peer in _peers)
            if (peer > _self.SelfId) StartThread(() => DialLoop(peer), $"plover-tcp-dial-{peer}");
    }

    public bool IsConnected(int peer) => Connection(peer) is { IsClosed: false };

    /// <summary>What this node tells an observer (<c>plover status</c>) that connects to its port.</summary>
    public Func<Wire.NodeStatus>? ObserverStatus { get; set; }

    /// <summary>Why peer is not connected, as far as this node knows (null: connected, or nothing seen yet). A
    /// refused incoming connection cannot be pinned on a peer before the handshake names it, so it is reported
    /// for every peer that is not connected.</summary>
    public string? Problem(int peer)
    {
        if (IsConnected(peer)) return null;
        string? own = (uint)peer < (uint)_problems.Length ? Volatile.Read(ref _problems[peer]) : null;
        string? inbound = _inboundProblem;
        return own is null ? inbound : inbound is null ? own : $"{own}; {inbound}";
    }

    private void NoteProblem(int peer, string problem)
    {
        if (peer == 0) _inboundProblem = problem;
        else if ((uint)peer < (uint)_problems.Length) Volatile.Write(ref _problems[peer], problem);
    }

    public bool Send(int peer, IFrameBody body) => Connection(peer)?.Send(body) ?? false;

    public bool Send(int peer, FrameType type, ReadOnlySpan<byte> body) => Connection(peer)?.Send(type, body) ?? false;

    public void Flush()
    {
        foreach (int peer in _peers) Connection(peer)?.Flush();
    }

    /// <summary>Flushes one peer only.</summary>
    public void Flush(int peer) => Connection(peer)?.Flush();

    private PeerConnection? Connection(int peer) =>
        (uint)peer < (uint)_connections.Length ? Volatile.Read(ref _connections[peer]) : null;

    // ---------------------------------------------------------------- connection setup

    private void AcceptLoop()
    {
        while (!_disposed)
        {
            Socket s;
            try { s = _listener!.Accept(); }
            catch (Exception) when (_disposed) { return; }
            catch (SocketException e)
            {
                Log($"accept failed: {e.SocketErrorCode}");
                Thread.Sleep(10);
                continue;
            }
            var source = (s.RemoteEndPoint as IPEndPoint)?.Address ?? IPAddress.None;
            if (_slots.TryTake(source) is { } full)
            {
                LogRefusal($"refused connection from {s.RemoteEndPoint}: {full}");
                s.Dispose();
                continue;
            }
            // Normal priority until the peer is authenticated: a stranger's connection must not get a real-time thread.
            var t = ThreadScheduling.Start(() => ServeAccepted(s, source), "plover-tcp-in", ThreadScheduling.Priority.Normal, _options.Log);
            t.Start();
        }
    }

    private void ServeAccepted(Socket socket, IPAddress source)
    {
        var remote = socket.RemoteEndPoint?.ToString() ?? "?";
        PeerConnection? conn;
        try
        {
            conn = Authenticate(socket, expectedPeer: 0, remote);
        }
        finally
        {
            _slots.Release(source);
        }
        if (conn is null) return;
        ThreadScheduling.RaiseCurrentThread(ThreadScheduling.Priority.Realtime, _options.Log);   // a node now: its reader is latency-critical
        conn.RunReader();
    }

    private void DialLoop(int peer)
    {
        var ep = _options.Endpoints[peer];
        var backoff = _options.ReconnectMin;
        int failures = 0;
        var random = new Random();
        while (!_disposed)
        {
            var socket = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            PeerConnection? conn = null;
            try
            {
                using (new Timer(_ => socket.Dispose(), null, _options.ConnectTimeout, Timeout.InfiniteTimeSpan))
                    socket.Connect(ep);
                conn = Authenticate(socket, peer, ep.ToString());
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                socket.Dispose();
                // A peer that is down is normal: say so once, then every 100 attempts.
                NoteProblem(peer, $"cannot connect to {ep}: {Describe(e)}");
                if (failures++ % 100 == 0 && !_disposed) Log($"cannot connect to node {peer} at {ep}: {Describe(e)} (retrying)");
            }
            if (conn is not null)
            {
                failures = 0;
                backoff = _options.ReconnectMin;
                conn.RunReader();
            }
            if (_disposed) return;
            // Exponential backoff with jitter, so two restarting nodes do not retry in lockstep.
            Thread.Sleep(TimeSpan.FromTicks((long)(backoff.Ticks * (0.5 + random.NextDouble() / 2))));
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _options.ReconnectMax.Ticks));
        }
    }

    /// <summary>Handshakes a fresh socket; returns the registered connection, or null (logged, socket closed).</summary>
    private PeerConnection? Authenticate(Socket socket, int expectedPeer, string remote)
    {
        var recv = new ByteBuffer();
        try
        {
            socket.NoDelay = true;
            socket.SendTimeout = (int)_options.HandshakeTimeout.TotalMilliseconds;
            var reader = new FrameReader(_options.MaxFrameBytes) { Stats = Traffic, Channel = Metrics.WireChannel.Consensus };
            var writer = new FrameWriter(_options.MaxFrameBytes) { Stats = Traffic, Channel = Metrics.WireChannel.Consensus };
            var result = expectedPeer != 0
                ? Handshake.Dial(socket, recv, reader, writer, _self, ChannelPurpose.Consensus, expectedPeer, _options.HandshakeTimeout)
                : Handshake.Accept(socket, recv, reader, writer, _self, ChannelPurpose.Consensus, 0, _options.HandshakeTimeout, allowObserver: true);
            if (result.Purpose == ChannelPurpose.Observer)
            {
                reader.Channel = writer.Channel = Metrics.WireChannel.Observer;
                ObserverLink.Serve(socket, recv, reader, writer, result, ObserverStatus, _options.HandshakeTimeout);
                socket.Shutdown(SocketShutdown.Both);
                socket.Dispose();
                recv.Dispose();
                return null;
            }
            PeerConnection conn;
            if (_ucx is not null)
            {
                // The frames go over UCX from here on, keyed as on TCP (the UcxHello frame is the first authenticated
                // one); the socket stays open to tell when the peer is gone.
                writer.Authenticate(new FrameAuthenticator(result.SendKey, result.Encrypt));
                reader.Authenticate(new FrameAuthenticator(result.ReceiveKey, result.Encrypt));
                var stream = Ucx.UcxBootstrap.Exchange(socket, recv, reader, writer, _ucx, _options.HandshakeTimeout);
                socket.SendTimeout = 0;
                socket.ReceiveTimeout = 0;
                conn = new Ucx.UcxConnection(this, socket, stream, result.PeerId, reader, writer, recv, _options.MaxQueuedBytes);
            }
            else
            {
                socket.SendTimeout = 0;
                socket.ReceiveTimeout = 0;
                conn = new TcpConnection(this, socket, result.PeerId, reader, writer, recv, result, _options.MaxQueuedBytes);
            }
            Register(conn);
            return conn;
        }
        catch (Exception e) when (e is HandshakeException or SocketException or ObjectDisposedException or IOException)
        {
            NoteProblem(expectedPeer, $"{(expectedPeer != 0 ? "connection to" : "connection from")} {remote} refused: {Describe(e)}");
            string message = $"refused connection {(expectedPeer != 0 ? $"to node {expectedPeer}" : "from")} {remote}: {Describe(e)}";
            if (!_disposed)
            {
                if (expectedPeer != 0) Log(message);   // our own dial: paced by the backoff, not by strangers
                else LogRefusal(message);
            }
            try { socket.Shutdown(SocketShutdown.Both); } catch { /* already closed */ }
            socket.Dispose();
            recv.Dispose();
            return null;
        }
    }

    private void Register(PeerConnection conn)
    {
        PeerConnection? old;
        lock (_connectionsLock)
        {
            if (_disposed) { conn.Close("transport stopped"); return; }
            old = _connections[conn.PeerId];
            Volatile.Write(ref _connections[conn.PeerId], conn);
        }
        old?.Close("replaced by a new connection from the same node");
        _inboundProblem = null;
        Log($"connected to node {conn.PeerId}{(conn is Ucx.UcxConnection ? " over UCX" : "")}");
        try { _sink.OnPeerConnected(conn.PeerId); }
        catch (Exception e) { Log($"connection handler failed: {e}"); }
    }

    internal void OnConnectionClosed(PeerConnection conn, string reason)
    {
        bool current;
        lock (_connectionsLock)
        {
            current = _connections[conn.PeerId] == conn;
            if (current) Volatile.Write(ref _connections[conn.PeerId], null);
        }
        NoteProblem(conn.PeerId, $"connection closed: {reason}");
        if (!_disposed) Log($"connection to node {conn.PeerId} closed: {reason}");
        if (!current) return;
        try { _sink.OnPeerDisconnected(conn.PeerId, reason); }
        catch (Exception e) { Log($"disconnection handler failed: {e}"); }
    }

    internal void Deliver(int peer, in Frame frame) => _sink.OnFrame(peer, frame);

    private void Log(string message)
    {
        try { _options.Log($"transport {_self.SelfId}: {message}"); }
        catch { /* a broken logger must not take the transport down */ }
    }

    private void LogRefusal(string message) => _refusals.Log(Log, message);

    private static string Describe(Exception e) => e switch
    {
        SocketException se => se.SocketErrorCode.ToString(),
        ObjectDisposedException => "timed out",
        _ => e.Message,
    };

    private void StartThread(ThreadStart body, string name)
    {
        var t = ThreadScheduling.Start(body, name, ThreadScheduling.Priority.Realtime, _options.Log);
        _threads.Add(t);
        t.Start();
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _listener?.Dispose();
        PeerConnection?[] all;
        lock (_connectionsLock) all = (PeerConnection?[])_connections.Clone();
        foreach (var c in all) c?.Close("transport stopped");
        foreach (var t in _threads) t.Join(TimeSpan.FromSeconds(2));
        _ucx?.Dispose();
    }
}
