using System.Runtime.InteropServices;
using Plover.Config;
using Plover.Node;
using Plover.Transport;

namespace Plover.Cli;

/// <summary>
/// What the bench-node command needs: load the config, build the TCP transport and the consensus driver for one
/// node id (always a fresh cluster: benchmarks start all three nodes together), answer status requests, log to
/// stderr with timestamps, and stop on SIGTERM/SIGINT.
/// </summary>
internal sealed class NodeHost : IDisposable
{
    private readonly ManualResetEventSlim _stop = new();
    private readonly List<PosixSignalRegistration> _signals = new();

    private NodeHost(ClusterConfig config, NodeConfig self, Func<ConsensusDriverOptions, ConsensusDriverOptions> tune)
    {
        Config = config;
        Self = self;
        Transport = new TcpTransport(TcpTransportOptions.FromConfig(config, self.Id, Log));
        Driver = new ConsensusDriver(tune(ConsensusDriverOptions.FromConfig(config, self.Id, Log)), Transport);
        Driver.Attach(Dispatcher);
        _ = new NodeStatusService(Transport, Dispatcher, () => new Wire.NodeStatus
        {
            NodeId = Self.Id, Role = Self.Role.Name(), Term = Driver.Term, LeaderId = Driver.LeaderId,
            ConsensusRole = Driver.RoleName, CommitIndex = Driver.CommitIndex,
            LastIndex = Driver.LastIndex, Fresh = Driver.IsFresh,
        });
    }

    public ClusterConfig Config { get; }
    public NodeConfig Self { get; }
    public TcpTransport Transport { get; }
    public FrameDispatcher Dispatcher { get; } = new();
    public ConsensusDriver Driver { get; }
    public WaitHandle StopRequested => _stop.WaitHandle;
    public bool Stopping => _stop.IsSet;

    /// <summary>Reads --config and --node; throws UsageException / ConfigException naming the problem. tune may change
    /// the consensus driver's options (benchmarks).</summary>
    public static NodeHost FromCommandLine(CommandLine cl, string command, Func<ConsensusDriverOptions, ConsensusDriverOptions>? tune = null)
    {
        string path = cl.Required("config");
        int id = cl.Int("node", null, 1);
        if (!File.Exists(path)) throw new UsageException($"{command}: config file '{path}' does not exist");
        var config = ClusterConfig.Load(path);
        return new NodeHost(config, config.Node(id), tune ?? (o => o));
    }

    public static void Log(string message) =>
        Console.Error.WriteLine($"{DateTime.Now:HH:mm:ss.ffffff} {message}");

    /// <summary>Starts the transport; with waitForPeersMs > 0, waits for every peer (bounded) before the consensus clock starts.</summary>
    public void Start(int waitForPeersMs)
    {
        foreach (var sig in new[] { PosixSignal.SIGTERM, PosixSignal.SIGINT })
            _signals.Add(PosixSignalRegistration.Create(sig, ctx =>
            {
                ctx.Cancel = true;   // we exit ourselves, cleanly
                _stop.Set();
            }));
        Transport.Start(Dispatcher);
        // A node that ticks before it can reach anyone would only time out and start elections.
        var deadline = Environment.TickCount64 + waitForPeersMs;
        while (Environment.TickCount64 < deadline && !Transport.Peers.All(Transport.IsConnected) && !_stop.IsSet)
            Thread.Sleep(1);
        Driver.Start();
        Log($"{Self} started (cluster '{Config.Cluster}', consensus tick {ConsensusDriverOptions.FromConfig(Config, Self.Id).TickMs} ms, " +
            $"{Plover.Platform.GcReport.Describe()})");
    }

    public void WaitForStop() => _stop.Wait();

    public void RequestStop() => _stop.Set();

    public void Dispose()
    {
        foreach (var s in _signals) s.Dispose();
        Driver.Dispose();
        Transport.Dispose();
    }
}
