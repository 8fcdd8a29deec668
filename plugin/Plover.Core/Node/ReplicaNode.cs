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

    private ReplicaNode(TcpTransport transport, ConsensusDriver driver, Replica replica, ReplicaSyncLink link)
    {
        _transport = transport;
        Driver = driver;
        Replica = replica;
        _link = link;
    }

    public ConsensusDriver Driver { get; }
    public Replica Replica { get; }
    public bool SyncLinkConnected => _link.Connected;

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
            return new ReplicaNode(transport, driver, replica, link);
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
