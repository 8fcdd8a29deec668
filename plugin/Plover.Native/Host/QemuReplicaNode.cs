using Plover.Config;
using Plover.Interop;
using Plover.Node;
using Plover.Sync;

namespace Plover.Native.Host;

/// <summary>
/// A replica inside QEMU: at machine_ready builds the QEMU adapters and a <see cref="ReplicaNode"/> from the
/// cluster config; net_to_guest goes through <see cref="OnNetToGuest"/>; shutdown through <see cref="Stop"/>.
/// </summary>
internal sealed unsafe class QemuReplicaNode
{
    private readonly QemuHost _host;
    private readonly MainThreadDispatcher _main;
    private readonly QemuReplicaHost _replicaHost;
    private readonly ReplicaNode _node;

    private QemuReplicaNode(QemuHost host, MainThreadDispatcher main, QemuReplicaHost replicaHost, ReplicaNode node)
    {
        _host = host;
        _main = main;
        _replicaHost = replicaHost;
        _node = node;
    }

    /// <summary>The node itself (its metrics read it).</summary>
    public ReplicaNode Node => _node;
    /// <summary>Null until the start-up probe decided how this node enters the cluster.</summary>
    public Replica? Replica => _node.Replica;
    public ConsensusDriver? Driver => _node.Driver;
    public StartMode? Mode => _node.Mode;
    public SyncFaultInjection? Faults => _node.Faults;
    public Plover.Wire.NodeStatus Status() => _node.Status();
    public Plover.Metrics.WireTraffic Traffic => _node.Traffic;
    public IGuestMemory Memory => _replicaHost.Memory;
    public IDiskHost? Disks => _replicaHost.Disks;
    public bool SyncLinkConnected => _node.SyncLinkConnected;
    public string? ReadinessProblem() => _node.ReadinessProblem();
    public bool Probing => _node.Probing;
    public bool StartFailed => _node.StartFailed;
    public SyncPointRamHash RamCheck { get; } = new();

    /// <summary>At machine_ready, MAIN thread: dirty logging on, adapters, consensus, sync link; output held from here.</summary>
    public static QemuReplicaNode Start(QemuHost host, MainThreadDispatcher main, ClusterConfig config, NodeConfig node)
    {
        int rc = host.DirtyLogStart();
        if (rc < 0) throw new InvalidOperationException($"dirty_log_start failed: {rc}");
        var replicaHost = new QemuReplicaHost(host, main, node.Id);
        int[]? vcpus = null;
        try { vcpus = host.VcpuThreadIds(); }
        catch (InvalidOperationException e) { host.Warn($"no idle detection ({e.Message}): syncs only at the maximum epoch by request"); }
        if (vcpus is { Length: 0 }) vcpus = null;
        var replicaNode = ReplicaNode.Start(config, node.Id, replicaHost, vcpus, host.Info);
        replicaNode.OperatorEvent = e =>
        {
            host.Info($"QMP event {e.Kind}: {e.Reason}");
            QmpSupport.Emit(host, e);
        };
        host.Info($"node {node.Id} runs as a replica: " +
                  $"{replicaHost.Memory.Blocks.Count} RAM block(s), {replicaHost.OutputPorts.Count} NIC(s), " +
                  $"{(vcpus is null ? "no" : vcpus.Length.ToString())} vCPU thread(s) watched for idleness" +
                  (config.Sync.Mode == SyncMode.Checkpoint ? "; CHECKPOINT MODE: the backup VM never runs, inputs go to the primary only, every dirty page is sent"
                   : config.Sync.Mode == SyncMode.Adaptive ? "; ADAPTIVE MODE: starts replicating, switches to checkpointing (and back) when syncs say it pays" : ""));
        return new QemuReplicaNode(host, main, replicaHost, replicaNode);
    }

    /// <summary>net_to_guest (MAIN): the frame is stolen (primary: proposed; backup or not started yet: dropped).</summary>
    public int OnNetToGuest(uint nic, Iovec* iov, int iovcnt) =>
        _node.Replica is { } replica ? _replicaHost.OnNetToGuest(replica, nic, iov, iovcnt) : PloverAbi.NetConsumed;

    /// <summary>At shutdown (MAIN): close the dispatcher first so that no library thread can wait for this thread
    /// while it joins them, then stop the node.</summary>
    public void Stop()
    {
        _main.Close();
        _node.Dispose();
        _host.Info("replica stopped");
    }
}
