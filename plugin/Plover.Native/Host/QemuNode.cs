using System.Net.Sockets;
using Plover.Config;
using Plover.Hashing;
using Plover.Interop;
using Plover.Metrics;
using Plover.Node;

namespace Plover.Native.Host;

/// <summary>
/// The library inside one QEMU, from plover_qemu_init to the shutdown hook: the hooks land here (main thread).
/// In <see cref="LibraryMode.Replicate"/> mode (the product) machine_ready starts a <see cref="QemuReplicaNode"/>
/// (consensus, syncvm, output guard) and the VM; frames into the guest go to it. In <see cref="LibraryMode.Probe"/>
/// mode the library only observes and obeys the admin socket (bring-up and tests of the QEMU integration).
/// Both serve the admin socket. Threads (admin server, hash workers) are created in Start, the replica's at
/// machine_ready (the RAM it works on exists only from then), never on a vCPU thread.
/// </summary>
internal sealed class QemuNode
{
    private readonly List<NicCounters> _nics = [];
    private volatile NicCounters[] _nicSnapshot = [];   // _nics for other threads (republished when it grows)
    private AdminServer? _admin;
    private PrometheusEndpoint? _metrics;
    private volatile bool _stopped;
    private volatile QemuReplicaNode? _replica;

    private QemuNode(QemuHost host, ClusterConfig config, NodeConfig node, string configPath, HashKernel kernel)
    {
        Host = host;
        Config = config;
        Node = node;
        ConfigPath = configPath;
        Main = new MainThreadDispatcher(host);
        Hasher = new PageHasher(config.Hashing.Threads, kernel);
    }

    public QemuHost Host { get; }
    public ClusterConfig Config { get; }
    public NodeConfig Node { get; }
    public string ConfigPath { get; }
    public LibraryMode Mode => Config.Mode;

    private long _inputsDroppedOnError;
    /// <summary>Frames on their way into the guest that the input hook failed on (too large, ...): dropped.</summary>
    public long InputsDroppedOnError => Interlocked.Read(ref _inputsDroppedOnError);
    public void CountInputDroppedOnError() => Interlocked.Increment(ref _inputsDroppedOnError);
    public MainThreadDispatcher Main { get; }
    public PageHasher Hasher { get; }
    public bool Stopped => _stopped;
    /// <summary>The replica (replicate mode, from machine_ready on); null before and in probe mode.</summary>
    public QemuReplicaNode? Replica => _replica;

    // Main-thread state.
    public bool MachineReady { get; private set; }
    public bool Running { get; private set; }
    public string RunState { get; private set; } = "prelaunch";
    public long VmStateChanges { get; private set; }

    public static QemuNode Start(QemuHost host, ClusterConfig config, NodeConfig node, string configPath)
    {
        string? requested = Environment.GetEnvironmentVariable(HashKernels.EnvironmentVariable);
        if (!HashKernels.TryResolve(requested, out HashKernel kernel, out string? kernelError))
        {
            host.Warn($"{kernelError}; using {HashKernels.Name(HashKernels.Best)}");
            kernel = HashKernels.Best;
        }
        var self = new QemuNode(host, config, node, configPath, kernel);
        try
        {
            if (node.Admin != null)
                self._admin = AdminServer.Start(node.Admin, new AdminCommands(self).Execute, host);
            if (node.Metrics != null && config.Mode == LibraryMode.Replicate)
                self._metrics = self.ServeMetrics();
        }
        catch
        {
            self._admin?.Dispose();
            self.Hasher.Dispose();
            throw;
        }
        host.Info($"node {node.Id} ({node.Role.Name()}) of cluster '{config.Cluster}' started in " +
                  $"{(config.Mode == LibraryMode.Probe ? "probe" : "replicate")} mode; admin socket {node.Admin ?? "(none)"}, " +
                  $"metrics {(self._metrics is null ? "off" + (node.Metrics != null ? " (not served in probe mode)" : "") : $"at http://{node.MetricsAddress}/metrics")}, " +
                  $"hash kernel {HashKernels.Name(kernel)} x {self.Hasher.Threads}, {Plover.Platform.GcReport.Describe()}");
        return self;
    }

    /// <summary>The Prometheus endpoint (from init on: a scrape before machine_ready sees role "starting"): the
    /// replica's metrics, and what only this host knows (the frames each NIC holds). Failures are InitException:
    /// QEMU refuses to start, naming the field.</summary>
    private PrometheusEndpoint ServeMetrics()
    {
        var metrics = NodeMetrics.ForReplica(Config, Node, () => _replica?.Node);
        var held = metrics.Factory.CreateGauge("plover_output_frames_held",
            "Frames the guest sent in the open epoch on this NIC, held by the output filter (as of QEMU's last report).", "nic");
        var heldBytes = metrics.Factory.CreateGauge("plover_output_bytes_held",
            "Bytes the guest sent in the open epoch on this NIC, held by the output filter.", "nic");
        var dropped = metrics.Factory.CreateCounter("plover_input_frames_dropped_on_error_total",
            "Frames on their way into the guest that the input hook failed on (too large, ...): dropped.");
        metrics.OnScrape(() =>
        {
            foreach (NicCounters nic in _nicSnapshot)   // written on the main thread: a racy read of whole longs
            {
                held.WithLabels(nic.Id.ToString()).Set(nic.HeldPkts);
                heldBytes.WithLabels(nic.Id.ToString()).Set(nic.HeldBytes);
            }
            dropped.IncTo(InputsDroppedOnError);
        });
        try
        {
            return metrics.Serve(Node.Metrics!, Host.Info);
        }
        catch (SocketException e)
        {
            throw new InitException(e.SocketErrorCode switch
                {
                    SocketError.AddressAlreadyInUse => Errno.EADDRINUSE,
                    SocketError.AddressNotAvailable => Errno.EADDRNOTAVAIL,
                    _ => Errno.EIO,
                }, $"{Config.NodeField(Node, "metrics")}: cannot serve metrics on {Node.MetricsAddress}: {e.Message}");
        }
    }

    /// <summary>The counters of a NIC, created on first sight (main thread).</summary>
    public NicCounters Nic(uint id)
    {
        if (_nics.Count <= id)
        {
            while (_nics.Count <= id)
                _nics.Add(new NicCounters((uint)_nics.Count));
            _nicSnapshot = _nics.ToArray();
        }
        return _nics[(int)id];
    }

    public IReadOnlyList<NicCounters> NicCounters => _nics;

    // ---- hooks (main thread) ----

    public void OnMachineReady()
    {
        MachineReady = true;
        foreach (RamBlockInfo b in Host.RamBlocks())
            Host.Info($"ram block {b.Id} '{b.Name}': {b.Length} bytes at ram_addr 0x{b.RamAddr:x}, " +
                      $"host page {b.HostPageSize}");
        foreach (NicInfo n in Host.Nics())
        {
            Nic(n.Id);
            Host.Info($"nic {n.Id} filter '{n.FilterId}' netdev '{n.NetdevId}' nic '{n.NicName}' " +
                      $"mac {n.MacText} vnet_hdr_len {n.VnetHdrLen}");
        }
        foreach (DriveInfo d in Host.Drives())
        {
            string image = Host.DriveFile(d.Id);
            Host.Info($"replicated drive {d.Id} '{d.Name}' ({d.Device}): {d.Size} bytes, {d.Granularity}-byte blocks, image " +
                      (image.Length > 0 ? $"{image} (its torn mark and generation are kept beside it)" : "not a local file"));
            if (image.Length == 0)
                Host.Warn($"replicated drive '{d.Name}' is not a local file: no torn mark or generation can be kept for it, so " +
                          "a half-written or older copy of it is not recognised after a crash or a full outage");
        }
        if (Mode == LibraryMode.Probe)
        {
            int rc = Host.DirtyLogStart();
            if (rc < 0)
                Host.Error($"dirty_log_start failed: {rc}");
            else
                Host.Info($"dirty logging started (accel {Host.AccelName() ?? "?"})");
            return;
        }
        _replica = QemuReplicaNode.Start(Host, Main, Config, Node);
        var startupGate = new Thread(() => StartGuestWhenReady(_replica)) { IsBackground = true, Name = "plover-startup" };
        startupGate.Start();
    }

    /// <summary>
    /// The guest runs only inside a working cluster: once consensus has a reachable leader and the sync link to the
    /// other replica is up, it is started (QEMU was started with -S: the library owns the run state from then on).
    /// If that does not happen within timeouts.startupMs, QEMU stops with the reason (a wrong cluster key, a peer
    /// that is not there): better no service than a replica that silently runs alone. Library thread.
    /// </summary>
    private void StartGuestWhenReady(QemuReplicaNode replica)
    {
        long deadline = Environment.TickCount64 + Config.Timeouts.StartupMs;
        string? problem;
        while ((problem = replica.ReadinessProblem()) is not null && !replica.StartFailed &&
               Environment.TickCount64 < deadline && !_stopped)
            Thread.Sleep(20);
        // The probe gives up at the same moment and then names the peers that never answered: wait for its verdict
        // (bounded) rather than fence with "still waiting".
        while (problem is not null && replica.Probing && Environment.TickCount64 < deadline + 2000 && !_stopped)
        {
            Thread.Sleep(20);
            problem = replica.ReadinessProblem();
        }
        if (_stopped) return;
        if (problem is not null)
        {
            Host.Error(replica.StartFailed ? $"node {Node.Id}: cannot start: {problem}"
                                           : $"node {Node.Id}: the cluster is not ready after {Config.Timeouts.StartupMs} ms: {problem}");
            Host.Fence($"node {Node.Id} cannot join cluster '{Config.Cluster}': {problem}");
            return;
        }
        if (replica.Mode == StartMode.Join)
        {
            Host.Info("cluster ready; the guest starts with the primary's state once its full sync arrives");
            return;
        }
        _ = Main.RunOnMainAsync(() =>
        {
            if (_stopped || replica.Replica is not { } r) return;
            try
            {
                Host.Info(r.StartGuest() ? $"cluster ready; guest started (accel {Host.AccelName() ?? "?"})"
                                         : "cluster ready; the guest starts when the sync in progress resumes it");
            }
            catch (InvalidOperationException e) { Host.Error($"vm_start failed: {e.Message}"); }
        });
    }

    public void OnVmStateChanged(bool running, string runState)
    {
        Running = running;
        RunState = runState;
        VmStateChanges++;
        if (Mode == LibraryMode.Probe)   // a replica stops and starts at every sync: not worth a line each
            Host.Debug($"vm {(running ? "running" : "stopped")} ({runState})");
    }

    public unsafe int OnNetToGuest(uint nic, Iovec* iov, int iovcnt)
    {
        if (iovcnt < 0 || (iovcnt > 0 && iov == null))
            throw new ArgumentException($"net_to_guest: bad iovec (iov {(nint)iov}, iovcnt {iovcnt})");
        long bytes = 0;
        for (int i = 0; i < iovcnt; i++)
            bytes += (long)iov[i].iov_len;
        NicCounters counters = Nic(nic);
        counters.CountToGuest(iov, iovcnt, bytes);
        if (Mode == LibraryMode.Probe)
            return counters.Steal ? PloverAbi.NetConsumed : PloverAbi.NetPass;
        // Replicate: nothing reaches the guest except through the log (before the replica exists: dropped).
        return _replica is { } replica ? replica.OnNetToGuest(nic, iov, iovcnt) : PloverAbi.NetConsumed;
    }

    public void OnNetFromGuest(uint nic, ulong epoch, ulong heldPkts, ulong heldBytes)
    {
        Nic(nic).RecordHeld(epoch, heldPkts, heldBytes);
        _replica?.Replica?.OnOutputHeld((int)nic, epoch, heldPkts);
    }

    /// <summary>Stops the library's threads. Waiting work is cancelled first so that no thread is left waiting
    /// for the main thread, which is the one stopping them here.</summary>
    public void OnShutdown()
    {
        if (_stopped)
            return;
        _stopped = true;
        Main.Close();
        _admin?.Dispose();
        _metrics?.Dispose();
        _replica?.Stop();
        Hasher.Dispose();
        Host.Info($"node {Node.Id} stopped");
    }
}
