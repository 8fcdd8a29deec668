using Plover.Config;
using Plover.Hashing;
using Plover.Interop;

namespace Plover.Native.Host;

/// <summary>
/// The library inside QEMU until the node logic (consensus, syncvm) is wired in: it observes the host through the
/// hooks, keeps statistics and serves the admin socket. One Probe per successful plover_qemu_init; its hook state
/// is touched only on the main thread. Threads (admin server, hash workers) are created in Start, never in a hook.
/// </summary>
internal sealed class Probe
{
    private readonly List<NicCounters> _nics = [];
    private AdminServer? _admin;
    private volatile bool _stopped;

    private Probe(QemuHost host, ClusterConfig config, NodeConfig node, string configPath, HashKernel kernel)
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
    public MainThreadDispatcher Main { get; }
    public PageHasher Hasher { get; }
    public bool Stopped => _stopped;

    // Main-thread state.
    public bool MachineReady { get; private set; }
    public bool Running { get; private set; }
    public string RunState { get; private set; } = "prelaunch";
    public long VmStateChanges { get; private set; }

    public static Probe Start(QemuHost host, ClusterConfig config, NodeConfig node, string configPath)
    {
        string? requested = Environment.GetEnvironmentVariable(HashKernels.EnvironmentVariable);
        if (!HashKernels.TryResolve(requested, out HashKernel kernel, out string? kernelError))
        {
            host.Warn($"{kernelError}; using {HashKernels.Name(HashKernels.Best)}");
            kernel = HashKernels.Best;
        }
        var probe = new Probe(host, config, node, configPath, kernel);
        try
        {
            if (node.Admin != null)
                probe._admin = AdminServer.Start(node.Admin, new AdminCommands(probe).Execute, host);
        }
        catch
        {
            probe.Hasher.Dispose();
            throw;
        }
        host.Info($"node {node.Id} ({node.Role.Name()}) of cluster '{config.Cluster}' started as a probe; " +
                  $"admin socket {node.Admin ?? "(none)"}, hash kernel {HashKernels.Name(kernel)} x {probe.Hasher.Threads}");
        return probe;
    }

    /// <summary>The counters of a NIC, created on first sight (main thread).</summary>
    public NicCounters Nic(uint id)
    {
        while (_nics.Count <= id)
            _nics.Add(new NicCounters((uint)_nics.Count));
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
        int rc = Host.DirtyLogStart();
        if (rc < 0)
            Host.Error($"dirty_log_start failed: {rc}");
        else
            Host.Info($"dirty logging started (accel {Host.AccelName() ?? "?"})");
    }

    public void OnVmStateChanged(bool running, string runState)
    {
        Running = running;
        RunState = runState;
        VmStateChanges++;
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
        return counters.Steal ? PloverAbi.NetConsumed : PloverAbi.NetPass;
    }

    public void OnNetFromGuest(uint nic, ulong epoch, ulong heldPkts, ulong heldBytes) =>
        Nic(nic).RecordHeld(epoch, heldPkts, heldBytes);

    /// <summary>Stops the library's threads. Waiting work is cancelled first so that no thread is left waiting
    /// for the main thread, which is the one stopping them here.</summary>
    public void OnShutdown()
    {
        if (_stopped)
            return;
        _stopped = true;
        Main.Close();
        _admin?.Dispose();
        Hasher.Dispose();
        Host.Info($"node {Node.Id} stopped");
    }
}
