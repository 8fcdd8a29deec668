using System.Net;
using Plover.Config;
using Plover.Consensus;
using Plover.Guard;
using Plover.Sync;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Node;

/// <summary>
/// A whole replica node from a cluster config: TCP transport, the start-up probe (a fresh cluster, or join a
/// running one), the consensus driver for this node id, the <see cref="Replica"/> on the given host, and the syncvm
/// link to the other replica. <see cref="Start"/> returns at once (it runs on QEMU's main thread); the probe and
/// everything after it run on a thread of this node, and the replica starts on the host's main thread when ready.
/// The witness is not a replica (it runs as <c>plover witness</c>, see <see cref="WitnessNode"/>).
/// </summary>
public sealed class ReplicaNode : IDisposable
{
    private readonly ClusterConfig _config;
    private readonly NodeConfig _self;
    private readonly NodeConfig _peer;
    private readonly IReplicaHost _host;
    private readonly int[]? _vcpus;
    private readonly Action<string> _log;
    private readonly SyncOptions? _sync;
    private readonly Func<NodeConfig, IPEndPoint> _syncEndpoint;
    private readonly TcpTransport _transport;
    private readonly FrameDispatcher _dispatcher = new();
    private readonly NodeStatusService _status;
    private readonly Thread _starter;
    private volatile bool _disposed;
    private volatile ConsensusDriver? _driver;
    private volatile Replica? _replica;
    private volatile ReplicaSyncLink? _link;
    private volatile string? _startFailure;

    private ReplicaNode(ClusterConfig config, NodeConfig self, IReplicaHost host, int[]? vcpus, Action<string> log,
                        SyncOptions? sync, Func<NodeConfig, IPEndPoint> syncEndpoint)
    {
        _config = config;
        _self = self;
        _peer = config.Nodes.Single(n => n.Id != self.Id && n.Role != NodeRole.Witness);
        _host = host;
        _vcpus = vcpus;
        _log = log;
        _sync = sync;
        _syncEndpoint = syncEndpoint;
        if (SyncFaultInjection.Enabled) Faults = new SyncFaultInjection(log);
        _transport = new TcpTransport(TcpTransportOptions.FromConfig(config, self.Id, log));
        _dispatcher.Register(FrameType.Consensus, (int peer, in Frame frame) => _driver?.OnConsensusFrame(peer, frame));
        _status = new NodeStatusService(_transport, _dispatcher, Status);
        _starter = new Thread(StartCluster) { IsBackground = true, Name = $"plover-start-{self.Id}" };
        _observeOperatorState = ObserveOperatorState;
        _problem = Problem;
        _emit = e => OperatorEvent?.Invoke(e);
    }

    private readonly OperatorEventWatcher _operatorEvents = new();
    private readonly Action _observeOperatorState;
    private readonly Func<string> _problem;
    private readonly Action<OperatorEvent> _emit;

    /// <summary>MAIN thread: a role change, protection lost or restored, a fence (QEMU emits them as QMP events).</summary>
    public Action<OperatorEvent>? OperatorEvent { get; set; }

    private void ObserveOperatorState() => _operatorEvents.Observe(OperatorSnapshot(), _problem, _emit);

    /// <summary>Test-only crashes at a sync step; null unless <see cref="SyncFaultInjection.Enabled"/>.</summary>
    public SyncFaultInjection? Faults { get; }

    /// <summary>Null until the start-up probe decided how this node enters the cluster.</summary>
    public ConsensusDriver? Driver => _driver;
    public Replica? Replica => _replica;
    public StartMode? Mode { get; private set; }
    public bool SyncLinkConnected => _link?.Connected ?? false;

    /// <summary>
    /// Builds node selfId on host and starts its transport (MAIN thread; never waits for peers). syncEndpoint maps
    /// a node to its sync listener (default: consensus port + 1, <see cref="ReplicaSyncLink.SyncEndpointFor"/>).
    /// </summary>
    public static ReplicaNode Start(ClusterConfig config, int selfId, IReplicaHost host, int[]? vcpuThreadIds, Action<string> log,
                                    SyncOptions? sync = null, Func<NodeConfig, IPEndPoint>? syncEndpoint = null)
    {
        var self = config.Node(selfId);
        if (self.Role == NodeRole.Witness) throw new ArgumentException($"node {selfId} is the witness: it runs no VM");
        var node = new ReplicaNode(config, self, host, vcpuThreadIds, log, sync,
            syncEndpoint ?? (n => ReplicaSyncLink.SyncEndpointFor(n.Endpoint)));
        try
        {
            node._transport.Start(node._dispatcher);
        }
        catch
        {
            node._transport.Dispose();
            throw;
        }
        node._starter.Start();
        return node;
    }

    /// <summary>The node's thread: probe, then consensus, replica and sync link; the replica starts on the main thread.</summary>
    private void StartCluster()
    {
        try
        {
            long deadline = Environment.TickCount64 + _config.Timeouts.StartupMs;
            var mode = StartupProbe.Decide(_status, _transport.Peers, deadline, () => _disposed);
            if (_disposed) return;
            if (mode is null)
            {
                _startFailure = StartupProbe.Unanswered(_status, _transport);
                return;
            }
            bool join = mode == StartMode.Join;
            if (_host.Disks is { Torn: true })
            {
                // a crash left the images half-written by a sync: they may be repaired by a join, never served from
                if (!join && _self.Role == NodeRole.Primary)
                {
                    _startFailure = $"node {_self.Id} would start a new cluster as its primary, but its replicated drives' " +
                                    $"images are marked torn ({TornImageMarks.Suffix} beside each image: a sync was writing " +
                                    "them when this node stopped); its guest must not run on them. Start the cluster with " +
                                    "the other replica configured as primary (this node then joins as backup and its full " +
                                    "sync repairs the images), or restore the images and remove the marks";
                    _log($"node {_self.Id}: start refused: {_startFailure}");
                    return;
                }
                _log($"node {_self.Id}: its replicated drives' images are marked torn; it enters as a backup and its " +
                     "first (full) sync repairs them and removes the marks");
            }
            if (!join && _self.Role == NodeRole.Primary && _host.Disks is { } disks && !StartServingImages(disks))
                return;
            bool imagesStale = !join && _self.Role == NodeRole.Backup && _host.Disks is not null;
            if (imagesStale) LogImagesStale(_host.Disks!);
            Mode = mode;
            _log($"node {_self.Id}: {(join ? "a cluster is running: joining it as a backup (full sync from its primary)" : "a fresh cluster: starting as " + _self.Role.Name())}");
            var options = ConsensusDriverOptions.FromConfig(_config, _self.Id, _log);
            var driver = new ConsensusDriver(join ? CopyWith(options, DurableState.Empty) : options, _transport);
            var replica = new Replica(new ReplicaOptions
            {
                Role = !join && _self.Role == NodeRole.Primary ? ReplicaRole.Primary : ReplicaRole.Backup,
                Joining = join,
                ImagesStale = imagesStale,
                PeerId = _peer.Id,
                BackupLoss = TimeSpan.FromMilliseconds(Math.Max(3 * _config.Timeouts.ElectionMaxMs, 500)),
                Sync = _sync ?? new SyncOptions
                {
                    HashThreads = _config.Hashing.Threads, Timeout = TimeSpan.FromMilliseconds(_config.Sync.TimeoutMs),
                    JoinTimeout = TimeSpan.FromMilliseconds(Math.Max(_config.Timeouts.StartupMs, _config.Sync.TimeoutMs)),
                    Checkpoint = _config.Sync.Mode == SyncMode.Checkpoint, EarlyResume = _config.Sync.EarlyResume,
                    ResumePoint = _config.Sync.ResumePoint, DeviceStateDelta = _config.Sync.DeviceStateDelta,
                    DiskChunkBytes = (long)_config.Sync.DiskChunkMiB << 20,
                    SubBlockBytes = _config.Sync.SubBlockBytes, SubBlockHashBytes = _config.Sync.SubBlockHashBytes,
                    HistoryLength = 4096, Log = _log,
                    StepHook = Faults is { } faults ? faults.OnStep : null,
                },
                Adaptive = _config.Sync.Adaptive,
                Idle = _config.Sync,
                VcpuThreadIds = _vcpus,
                Log = _log,
            }, _host, driver);
            var identity = TcpTransportOptions.FromConfig(_config, _self.Id, _log).Identity;
            var link = new ReplicaSyncLink(replica.Engine, identity, _peer.Id, _syncEndpoint(_self), _syncEndpoint(_peer),
                TimeSpan.FromSeconds(5), _log, _transport.Traffic, _config.Ucx);
            replica.Drained = _observeOperatorState;
            _driver = driver;
            _replica = replica;
            _link = link;
            driver.Start();
            _host.Main.Post(() => { if (!_disposed) replica.Start(); });
        }
        catch (Exception e) when (!_disposed)
        {
            _startFailure = $"{e.GetType().Name}: {e.Message}";
            _log($"node {_self.Id}: start failed: {_startFailure}");
        }
    }

    /// <summary>A fresh cluster's primary: its guest will run on its own images and the backup's are overwritten,
    /// so they must be at least as new as the backup's (a full outage after a failover leaves the other replica's
    /// newer); then they serve at one past both replicas' generations. False (the start failed) when the peer's are newer.</summary>
    private bool StartServingImages(IDiskHost disks)
    {
        var peer = _status.Latest(_peer.Id);
        var theirs = new DiskGeneration(peer?.DiskGeneration ?? 0, peer?.DiskGenerationPrimary ?? false);
        var mine = disks.Generation;
        if (theirs.IsNewerThan(mine))
        {
            _startFailure = $"node {_self.Id} would start a new cluster as its primary, but node {_peer.Id}'s drive images " +
                            $"are newer (generation {theirs}; this node's: {mine}): it served after this node's images " +
                            $"were last current, so starting here would lose its writes. Start the cluster with node " +
                            $"{_peer.Id} configured as primary (this node then joins as backup and is synced from it)";
            _log($"node {_self.Id}: start refused: {_startFailure}");
            return false;
        }
        var serving = new DiskGeneration(Math.Max(mine.Number, theirs.Number) + 1, Primary: true);
        disks.RecordGeneration(serving);
        _log($"node {_self.Id}: its drive images serve at generation {serving.Number} (this node's were {mine}, node {_peer.Id}'s {theirs})");
        return true;
    }

    /// <summary>A fresh cluster's backup with replicated drives: its images are not known to be its primary's (a
    /// synced copy lags the primary's images by what the primary wrote after that sync, or while it ran alone; the
    /// fresh primary's always serve at a newer generation), so its power-on state is not the primary's until its
    /// first sync compared every block. Until then it must not take over (ReplicaOptions.ImagesStale).</summary>
    private void LogImagesStale(IDiskHost disks) =>
        _log($"node {_self.Id}: its drive images ({(disks.Torn ? "marked torn" : $"generation {disks.Generation}")}) are " +
             "not known to be the primary's: it does not take over before its first sync has compared and rewritten them");

    private static ConsensusDriverOptions CopyWith(ConsensusDriverOptions o, DurableState restored) => new()
    {
        Consensus = o.Consensus, TickMs = o.TickMs, MaxQueuedProposalBytes = o.MaxQueuedProposalBytes,
        InlineProcessing = o.InlineProcessing, Seed = o.Seed, Log = o.Log, Restored = restored,
    };

    /// <summary>
    /// Null once this replica has what it needs to run the guest: a consensus leader it can reach (so a majority
    /// exists) and the sync link to the other replica (so the guest is protected from its first epoch). Otherwise
    /// what is missing, naming the peers and the last error seen for each ("authentication failed ... wrong
    /// cluster key?", "connection refused").
    /// </summary>
    /// <summary>The start-up probe is still deciding how this node enters the cluster (it gives up at startupMs).</summary>
    public bool Probing => _driver is null && _startFailure is null && !_disposed;

    /// <summary>The start failed for good (the probe gave up, a torn image refused, an error): waiting cannot help.</summary>
    public bool StartFailed => _startFailure is not null;

    public string? ReadinessProblem()
    {
        if (_startFailure is { } failure) return failure;
        var problems = new List<string>();
        var driver = _driver;
        int leader = driver?.LeaderId ?? 0;
        int connected = _transport.Peers.Count(_transport.IsConnected);
        bool majority = connected + 1 >= (_transport.Peers.Count + 1) / 2 + 1;
        if (driver is null || leader == 0 || !majority || (leader != driver.SelfId && !_transport.IsConnected(leader)))
        {
            var missing = _transport.Peers.Where(p => !_transport.IsConnected(p))
                .Select(p => $"node {p}: {_transport.Problem(p) ?? "no answer yet"}").ToList();
            problems.Add($"{(driver is null ? "not started: the start-up probe is still waiting" : "no consensus leader")}" +
                         $"{(missing.Count > 0 ? $" (not connected to {string.Join("; ", missing)})" : "")}");
        }
        if (_replica is { IsStarted: false })
            problems.Add("the replica has not started yet");
        if (!SyncLinkConnected)
            problems.Add($"no sync connection to node {_peer.Id}: {_link?.Problem ?? "no answer yet"}");
        return problems.Count == 0 ? null : string.Join("; ", problems);
    }

    /// <summary>Every frame this node sent and received (consensus, sync link, observers).</summary>
    public Metrics.WireTraffic Traffic => _transport.Traffic;

    /// <summary>The role, term and protection as operators see them (any thread; allocates nothing).</summary>
    public OperatorState OperatorSnapshot()
    {
        var driver = _driver;
        var replica = _replica;
        if (driver is null || replica is null) return new OperatorState(OperatorRole.Starting, 0, false, 0, 0, "");
        bool primary = replica.Role == ReplicaRole.Primary;
        bool isProtected = primary && !replica.IsFenced && !replica.RunsAlone && SyncLinkConnected &&
                           replica.Guard.State == GuardState.Holding;
        return new OperatorState(
            replica.IsJoining ? OperatorRole.Joining : primary ? OperatorRole.Primary : OperatorRole.Backup,
            driver.Term,
            isProtected,
            // protected means synced with the other VM node, before the ROLE entry that names it has committed
            isProtected ? _peer.Id : primary ? replica.BackupId : 0,
            replica.Fences, replica.LastFenceReason);
    }

    /// <summary>What keeps this node from being a protected primary or a ready backup ("" if nothing), and how far a
    /// sync whose disk part runs in chunks (a full sync of a large disk) has got.</summary>
    public string Problem()
    {
        var replica = _replica;
        if (_driver is null || replica is null) return ReadinessProblem() ?? "starting";
        string problem = ReplicaProblem(replica);
        var disk = replica.Engine.DiskProgress.Current;
        return !disk.Running ? problem : $"{problem}{(problem.Length > 0 ? "; " : "")}sync e{disk.Epoch}: {disk}";
    }

    private string ReplicaProblem(Replica replica)
    {
        return replica.IsFenced ? "deposed: rejoining as backup"
            : replica.IsJoining ? "waiting for the primary's full sync"
            : replica.Role == ReplicaRole.Primary && replica.RunsAlone ? "running unprotected (no backup)"
            : !SyncLinkConnected ? $"no sync connection to node {_peer.Id}"
            : replica.Role == ReplicaRole.Primary && replica.Guard.State != GuardState.Holding ? "output is not held (unprotected)"
            : "";
    }

    /// <summary>What this node tells peers and observers (<c>plover status</c>).</summary>
    public NodeStatus Status()
    {
        var driver = _driver;
        var replica = _replica;
        var s = new NodeStatus { NodeId = _self.Id };
        s.Traffic.AddRange(_transport.Traffic.ToWire());
        if (_host.Disks is { } disks)
            (s.DiskGeneration, s.DiskGenerationPrimary) = (disks.Generation.Number, disks.Generation.Primary);
        if (driver is null || replica is null)
        {
            s.Role = "starting";
            s.Fresh = Mode != StartMode.Join;
            s.Problem = ReadinessProblem() ?? "starting";
            return s;
        }
        var ballot = driver.Ballot;
        s.Role = replica.IsJoining ? "joining" : replica.Role == ReplicaRole.Primary ? "primary" : "backup";
        s.Term = ballot.Round;
        s.BallotNode = ballot.NodeId;
        s.LeaderId = driver.LeaderId;
        s.ConsensusRole = driver.RoleName;
        s.CommitIndex = driver.CommitIndex;
        s.LastIndex = driver.LastIndex;
        s.LastSyncEpoch = replica.LastSyncEpoch;
        var last = replica.Engine.Metrics.LastCompleted;
        s.LastSyncUnixUs = last is null ? 0 : (last.StartedUtc - DateTime.UnixEpoch).Ticks / 10;
        s.Protected = OperatorSnapshot().Protected;
        s.BackupId = replica.Role == ReplicaRole.Primary ? replica.BackupId : 0;
        s.Fresh = driver.IsFresh;
        s.Fenced = replica.IsFenced;
        s.Problem = Problem();
        s.Mode = (replica.Adaptive ? "adaptive " : "") + (replica.Checkpoint ? "checkpoint" : "replicate");
        return s;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _starter.Join(TimeSpan.FromSeconds(5));
        _link?.Dispose();
        _replica?.Dispose();
        _driver?.Dispose();
        _transport.Dispose();
    }
}
