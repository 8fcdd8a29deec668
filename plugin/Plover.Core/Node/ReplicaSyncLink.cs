using System.Net;
using System.Net.Sockets;
using Plover.Sync;
using Plover.Transport;

namespace Plover.Node;

/// <summary>
/// Keeps the authenticated syncvm connection between the two replicas up: whenever the engine has none (at start,
/// or after an abort closed it) the node with the lower id dials the peer's sync endpoint and the other accepts on
/// its own listener. A sync that starts while the link is down aborts and the next one (whose union still covers
/// everything, nobody cleared dirt) runs once the link is back. The accepting side handshakes every connection on a
/// thread of its own (at most 8 at once, 4 per source address, the Hello due within a second), so strangers
/// holding connections open cannot keep the peer's connection waiting; refusals are logged at most 10 per 10 s.
/// </summary>
public sealed class ReplicaSyncLink : IDisposable
{
    private readonly SyncEngine _engine;
    private readonly ClusterIdentity _self;
    private readonly int _peerId;
    private readonly IPEndPoint _peerEndpoint;
    private readonly Socket? _listener;
    private readonly TimeSpan _timeout;
    private readonly Action<string> _log;
    private readonly Metrics.WireTraffic? _wire;
    private readonly Transport.Ucx.UcxWorker? _ucx;   // "transport": "ucx": a worker of its own, so page transfers never delay consensus
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _stop = new();
    private volatile string? _lastError;
    private long _connections;
    private readonly object _adoptLock = new();
    private readonly Transport.HandshakeSlots _slots = new(8, 4);
    private readonly Transport.LogRateLimiter _refusals = new(10, TimeSpan.FromSeconds(10));

    /// <param name="listen">This node's own sync endpoint; listened on only when this node accepts (higher id).</param>
    public ReplicaSyncLink(SyncEngine engine, ClusterIdentity self, int peerId, IPEndPoint listen, IPEndPoint peerEndpoint,
                           TimeSpan timeout, Action<string> log, Metrics.WireTraffic? wire = null, Transport.Ucx.UcxSettings? ucx = null)
    {
        if (ucx is not null) _ucx = new Transport.Ucx.UcxWorker(ucx, $"sync-{self.SelfId}", log);
        _wire = wire;
        _engine = engine;
        _self = self;
        _peerId = peerId;
        _peerEndpoint = peerEndpoint;
        _timeout = timeout;
        _log = log;
        if (!Dials)
        {
            _listener = new Socket(listen.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            _listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            _listener.Bind(listen);
            _listener.Listen(64);   // room for strangers' connections beside the peer's (a full queue delays its connect by seconds)
        }
        _thread = new Thread(Loop) { IsBackground = true, Name = $"plover-sync-link-{self.SelfId}" };
        _thread.Start();
    }

    /// <summary>The lower id dials (the rule of the whole cluster).</summary>
    public bool Dials => _self.SelfId < _peerId;
    /// <summary>The endpoint actually listened on (a port 0 request gets a real port), or null when dialing.</summary>
    public IPEndPoint? ListenEndpoint => (IPEndPoint?)_listener?.LocalEndPoint;
    public bool Connected => _engine.Connection is { IsClosed: false };
    /// <summary>Why the link is down, last seen (null when connected or nothing failed yet).</summary>
    public string? Problem => Connected ? null : _lastError;
    /// <summary>Connections established so far (reconnections included).</summary>
    public long Connections => Interlocked.Read(ref _connections);

    /// <summary>A node's sync endpoint by convention: its consensus address, port + 1.</summary>
    public static IPEndPoint SyncEndpointFor(IPEndPoint consensus) => new(consensus.Address, consensus.Port + 1);

    private void Loop()
    {
        while (!_stop.IsSet)
        {
            if (_engine.Connection is { IsClosed: false })
            {
                _stop.Wait(20);
                _engine.CheckIdleConnection();
                continue;
            }
            try
            {
                if (!Dials)
                {
                    // Accept only once a connection waits: an accept that timed out would stay pending and swallow the next one.
                    if (_listener!.Poll(200_000, SelectMode.SelectRead)) StartHandshake(_listener.Accept());
                    continue;
                }
                Adopt(SyncConnection.Connect(_peerEndpoint, _self, _peerId, _timeout, _wire, _ucx));
            }
            catch (Exception e) when (!_stop.IsSet)
            {
                string message = e is AggregateException a ? a.GetBaseException().Message : e.Message;
                if (message != _lastError) _log($"sync link {_self.SelfId}: no connection to node {_peerId} yet: {message}");
                _lastError = message;
                _stop.Wait(50);
            }
            catch
            {
                // shutting down: the listener was closed under Accept
            }
        }
    }

    /// <summary>Makes connection the engine's unless another one got there first.</summary>
    private void Adopt(SyncConnection connection)
    {
        lock (_adoptLock)
        {
            if (_stop.IsSet || _engine.Connection is { IsClosed: false })
            {
                connection.Dispose();
                return;
            }
            _engine.Connection = connection;
            Interlocked.Increment(ref _connections);
            _lastError = null;
        }
        _log($"sync link {_self.SelfId}: connected to node {_peerId}{(_ucx is not null ? " over UCX" : "")}");
    }

    /// <summary>Handshakes an accepted socket on a thread of its own (normal priority: nobody is authenticated yet).</summary>
    private void StartHandshake(Socket socket)
    {
        string remote = socket.RemoteEndPoint?.ToString() ?? "?";
        var source = (socket.RemoteEndPoint as IPEndPoint)?.Address ?? IPAddress.None;
        if (_slots.TryTake(source) is { } full)
        {
            _refusals.Log(_log, $"sync link {_self.SelfId}: refused connection from {remote}: {full}");
            socket.Dispose();
            return;
        }
        var thread = new Thread(() =>
        {
            try
            {
                Adopt(SyncConnection.AcceptFrom(socket, _self, _peerId, _timeout, _wire, _ucx));
            }
            catch (Exception e) when (!_stop.IsSet)
            {
                _lastError = e.Message;
                _refusals.Log(_log, $"sync link {_self.SelfId}: refused connection from {remote}: {e.Message}");
            }
            catch
            {
                // shutting down
            }
            finally
            {
                _slots.Release(source);
            }
        }) { IsBackground = true, Name = "plover-sync-in" };
        thread.Start();
    }

    public void Dispose()
    {
        if (_stop.IsSet) return;
        _stop.Set();
        _listener?.Dispose();
        _thread.Join(TimeSpan.FromSeconds(2));
        _engine.Connection?.Dispose();
        _ucx?.Dispose();
    }
}
