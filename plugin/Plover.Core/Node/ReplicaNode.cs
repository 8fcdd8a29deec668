using System.Net;
using Plover.Config;
using Plover.Sync;
using Plover.Transport;

namespace Plover.Node;

/// <summary>
/// A whole replica node from a cluster config: TCP transport and consensus driver for this node id, the
/// <see cref="Replica"/> on the given host, and the syncvm link to the other replica. The witness is not a replica
/// (it runs as <c>plover witness</c>).
/// </summary>
public sealed class ReplicaNode : IDisposable
{
    private readonly TcpTransport _transport;
    private readonly ReplicaSyncLink _link;

    private readonly int _peerId;

    private ReplicaNode(TcpTransport transport, ConsensusDriver driver, Replica replica, ReplicaSyncLink link, int peerId)
    {
        _peerId = peerId;
        _transport = transport;
        Driver = driver;
        Replica = replica;
        _link = link;
    }

    public ConsensusDriver Driver { get; }
    public Replica Replica { get; }
    public bool SyncLinkConnected => _link.Connected;

    /// <summary>
    /// Null once this replica has what it needs to run the guest: a consensus leader it can reach (so a majority
    /// exists) and the sync link to the other replica (so the guest is protected from its first epoch). Otherwise
    /// what is missing, naming the peers and the last error seen for each ("authentication failed ... wrong
    /// cluster key?", "connection refused").
    /// </summary>
    public string? ReadinessProblem()
    {
        var problems = new List<string>();
        int leader = Driver.LeaderId;
        int connected = _transport.Peers.Count(_transport.IsConnected);
        bool majority = connected + 1 >= (_transport.Peers.Count + 1) / 2 + 1;
        if (leader == 0 || !majority || (leader != Driver.SelfId && !_transport.IsConnected(leader)))
        {
            var missing = _transport.Peers.Where(p => !_transport.IsConnected(p))
                .Select(p => $"node {p}: {_transport.Problem(p) ?? "no answer yet"}").ToList();
            problems.Add($"no consensus leader{(missing.Count > 0 ? $" (not connected to {string.Join("; ", missing)})" : "")}");
        }
        if (!_link.Connected)
            problems.Add($"no sync connection to node {_peerId}: {_link.Problem ?? "no answer yet"}");
        return problems.Count == 0 ? null : string.Join("; ", problems);
    }

    /// <summary>
    /// Builds and starts node selfId on host. MAIN thread (the replica starts holding output here); never waits for
    /// peers: consensus and the sync link connect in the background. syncEndpoint maps a node to its sync
    /// listener (default: consensus port + 1, <see cref="ReplicaSyncLink.SyncEndpointFor"/>).
    /// </summary>
    public static ReplicaNode Start(ClusterConfig config, int selfId, IReplicaHost host, int[]? vcpuThreadIds, Action<string> log,
                                    SyncOptions? sync = null, Func<NodeConfig, IPEndPoint>? syncEndpoint = null)
    {
        var self = config.Node(selfId);
        if (self.Role == NodeRole.Witness) throw new ArgumentException($"node {selfId} is the witness: it runs no VM");
        var peer = config.Nodes.Single(n => n.Id != selfId && n.Role != NodeRole.Witness);
        syncEndpoint ??= n => ReplicaSyncLink.SyncEndpointFor(n.Endpoint);

        var transportOptions = TcpTransportOptions.FromConfig(config, selfId, log);
        var transport = new TcpTransport(transportOptions);
        ConsensusDriver? driver = null;
        Replica? replica = null;
        try
        {
            driver = new ConsensusDriver(ConsensusDriverOptions.FromConfig(config, selfId, log), transport);
            var dispatcher = new FrameDispatcher();
            driver.Attach(dispatcher);
            replica = new Replica(new ReplicaOptions
            {
                Role = self.Role == NodeRole.Primary ? ReplicaRole.Primary : ReplicaRole.Backup,
                Sync = sync ?? new SyncOptions
                {
                    HashThreads = config.Hashing.Threads, Timeout = TimeSpan.FromMilliseconds(config.Sync.TimeoutMs),
                    SendAllDirty = config.Sync.RemusMode, HistoryLength = 4096, Log = log,
                },
                Idle = config.Sync,
                VcpuThreadIds = vcpuThreadIds,
                Log = log,
            }, host, driver);
            var link = new ReplicaSyncLink(replica.Engine, transportOptions.Identity, peer.Id, syncEndpoint(self), syncEndpoint(peer),
                TimeSpan.FromSeconds(5), log);
            transport.Start(dispatcher);
            driver.Start();
            replica.Start();
            return new ReplicaNode(transport, driver, replica, link, peer.Id);
        }
        catch
        {
            replica?.Dispose();
            driver?.Dispose();
            transport.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        _link.Dispose();
        Replica.Dispose();
        Driver.Dispose();
        _transport.Dispose();
    }
}
