using System.Net.Sockets;
using Plover.Config;
using Plover.Consensus;
using Plover.Metrics;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Node;

/// <summary>
/// The witness: the third member of the cluster. It votes and stores the log (in memory, truncated as the leader
/// compacts), runs no VM, answers status requests, and enters the cluster like a replica does: a fresh cluster when
/// every member is just starting, otherwise it joins the running one with an empty consensus memory.
/// </summary>
public sealed class WitnessNode : IDisposable
{
    private readonly ClusterConfig _config;
    private readonly Action<string> _log;
    private readonly FrameDispatcher _dispatcher = new();
    private readonly NodeStatusService _status;
    private volatile ConsensusDriver? _driver;
    private volatile PrometheusEndpoint? _metrics;
    private volatile bool _disposed;

    public WitnessNode(ClusterConfig config, int selfId, Action<string> log)
    {
        _config = config;
        Self = config.Node(selfId);
        if (Self.Role != NodeRole.Witness)
            throw new ArgumentException($"node {Self.Id} is the {Self.Role.Name()} in the config, not the witness");
        _log = log;
        Transport = new TcpTransport(TcpTransportOptions.FromConfig(config, selfId, log));
        _dispatcher.Register(FrameType.Consensus, (int peer, in Frame frame) => _driver?.OnConsensusFrame(peer, frame));
        _status = new NodeStatusService(Transport, _dispatcher, Status);
    }

    public NodeConfig Self { get; }
    public TcpTransport Transport { get; }
    public ConsensusDriver? Driver => _driver;
    public StartMode? Mode { get; private set; }
    /// <summary>The Prometheus endpoint (from Start on, when the config gives this node a metrics address).</summary>
    public PrometheusEndpoint? MetricsEndpoint => _metrics;

    private long _committed, _inputs;

    /// <summary>Entries applied, and how many of them were inputs.</summary>
    public long Committed => Interlocked.Read(ref _committed);
    public long Inputs => Interlocked.Read(ref _inputs);

    /// <summary>
    /// Starts the transport, decides fresh or join, starts consensus and waits (up to timeouts.startupMs) for a
    /// majority. Returns null when running, else what is missing (naming each unreachable peer and why).
    /// </summary>
    public string? Start(Func<bool> stopping)
    {
        if (Self.Metrics is { } at)
        {
            try { _metrics = NodeMetrics.ForWitness(_config, this).Serve(at, _log); }
            catch (SocketException e)
            {
                return $"cannot serve metrics on {Self.MetricsAddress} ({_config.NodeField(Self, "metrics")}): {e.Message}";
            }
            _log($"witness {Self.Id}: metrics at http://{Self.MetricsAddress}/metrics");
        }
        Transport.Start(_dispatcher);
        long deadline = Environment.TickCount64 + _config.Timeouts.StartupMs;
        var mode = StartupProbe.Decide(_status, Transport.Peers, deadline, () => stopping() || _disposed);
        if (mode is null) return StartupProbe.Unanswered(_status, Transport);
        Mode = mode;
        var options = ConsensusDriverOptions.FromConfig(_config, Self.Id, _log);
        var driver = new ConsensusDriver(mode == StartMode.Join ? new ConsensusDriverOptions
        {
            Consensus = options.Consensus, TickMs = options.TickMs, Log = options.Log, Restored = DurableState.Empty,
        } : options, Transport);
        driver.Committed = e =>
        {
            Interlocked.Increment(ref _committed);
            if (e.Type == EntryType.Input) Interlocked.Increment(ref _inputs);
        };
        driver.StateChanged = s =>
            _log($"witness {Self.Id}: leader {(s.LeaderId == 0 ? "unknown" : s.LeaderId.ToString())}, ballot {s.Ballot} (term {s.Ballot.Round})");
        _driver = driver;
        driver.Start();
        _log($"witness {Self.Id}: {(mode == StartMode.Join ? "joined the running cluster" : "started a fresh cluster")}");
        int needed = (Transport.Peers.Count + 1) / 2;   // peers besides this node for a majority
        while (Transport.Peers.Count(Transport.IsConnected) < needed)
        {
            if (Environment.TickCount64 >= deadline || stopping()) return Missing($"no majority after {_config.Timeouts.StartupMs} ms");
            Thread.Sleep(20);
        }
        return null;
    }

    private string Missing(string what) =>
        $"{what} of cluster '{_config.Cluster}': " + string.Join("; ", Transport.Peers.Where(p => !Transport.IsConnected(p))
            .Select(p => $"node {p}: {Transport.Problem(p) ?? "no answer"}"));

    public NodeStatus Status()
    {
        var d = _driver;
        var s = d is null ? new NodeStatus { NodeId = Self.Id, Role = "starting", Fresh = Mode != StartMode.Join, Problem = "starting" } : new NodeStatus
        {
            NodeId = Self.Id, Role = "witness", Term = d.Ballot.Round, BallotNode = d.Ballot.NodeId, LeaderId = d.LeaderId,
            ConsensusRole = d.RoleName, CommitIndex = d.CommitIndex, LastIndex = d.LastIndex,
            Fresh = d.IsFresh,
            Problem = d.IsRecovering ? "recovering its consensus state: waits for an answer from every other node"
                : d.LeaderId == 0 ? "no leader known" : "",
        };
        s.Traffic.AddRange(Transport.Traffic.ToWire());
        return s;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _metrics?.Dispose();
        _driver?.Dispose();
        Transport.Dispose();
    }
}
