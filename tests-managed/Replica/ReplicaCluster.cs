using System.Buffers.Binary;
using System.Net;
using Plover.Consensus;
using Plover.Node;
using Plover.Sync;
using Plover.Tests.Transport;
using Plover.Transport;
using Xunit;

namespace Plover.Tests.Replica;

/// <summary>
/// A primary (node 1), a backup (node 2) and a witness (node 3) in one process: three consensus drivers over real
/// loopback TCP, two <see cref="Plover.Node.Replica"/>s on fake hosts, and their syncvm link.
/// </summary>
public sealed class ReplicaCluster : IDisposable
{
    public static readonly (string, ulong)[] Blocks = [("pc.ram", 4UL << 20), ("vga.vram", 1UL << 20)];

    private readonly List<TcpTransport> _transports = new();
    private readonly List<ConsensusDriver> _drivers = new();
    private readonly List<ReplicaSyncLink> _links = new();

    /// <summary>vCPUs that never run: the idle monitor sees an idle guest at every window.</summary>
    private sealed class IdleCpu : Plover.Idle.ICpuTimeSource
    {
        public bool TryRead(int threadId, out long nanoseconds) { nanoseconds = 0; return true; }
    }

    /// <param name="idleTrigger">The primary runs the idle monitor (over vCPUs that are always idle) instead of syncing only on request.</param>
    /// <param name="checkpoint">Checkpoint mode (inputs straight into the primary's guest, a passive backup).</param>
    /// <param name="record">The hosts keep a copy of every injected frame and the guests answer (off: they only count).</param>
    /// <param name="ucx">Consensus frames and the sync link over UCX instead of TCP.</param>
    /// <param name="adaptive">Adaptive mode's policy (null: off), on both replicas.</param>
    public ReplicaCluster(Action<SyncRole, SyncStep>? stepHook = null, bool idleTrigger = false, bool checkpoint = false, bool record = true,
                          Plover.Transport.Ucx.UcxSettings? ucx = null, AdaptiveOptions? adaptive = null, bool disks = false)
    {
        var ids = new[] { 1, 2, 3 };
        var eps = TransportTestKit.Endpoints(ids, TransportTestKit.FreePorts(3));
        foreach (int id in ids)
        {
            // (this test is about order, not failover)
            var (transport, driver) = TransportTestKit.StartConsensusNode(id, eps, Log.Sink, electionMinTicks: 200, electionMaxTicks: 400, retransmitTicks: 20,
                                                                          ucx: ucx);
            _transports.Add(transport);
            _drivers.Add(driver);
        }

        PrimaryHost = new FakeReplicaHost("primary", Blocks, seed: 11, diverge: true, record);
        BackupHost = new FakeReplicaHost("backup", Blocks, seed: 22, diverge: false, record);
        if (disks)   // one small drive each; the primary's images serve at generation 1, as a fresh cluster's primary records
        {
            PrimaryHost.Disks = new SyntheticDisks(("data0", 64UL << 10)) { Generation = new DiskGeneration(1, Primary: true) };
            BackupHost.Disks = new SyntheticDisks(("data0", 64UL << 10));
        }
        var syncOptions = new SyncOptions { Log = Log.Sink, HashThreads = 1, StepHook = stepHook, Timeout = TimeSpan.FromSeconds(20), Checkpoint = checkpoint };
        Primary = new Plover.Node.Replica(new ReplicaOptions
        {
            Role = ReplicaRole.Primary, Sync = syncOptions, Log = Log.Sink, PeerId = 2,
            VcpuThreadIds = idleTrigger ? [1001, 1002] : null, Idle = new Plover.Config.SyncConfig(100, 25, 3, 200), CpuTime = new IdleCpu(),
            Adaptive = adaptive,
        }, PrimaryHost, _drivers[0]);
        Backup = new Plover.Node.Replica(new ReplicaOptions { Role = ReplicaRole.Backup, Sync = syncOptions, Log = Log.Sink, PeerId = 1, Adaptive = adaptive },
                                         BackupHost, _drivers[1]);
        PrimaryHost.OutputHeld = () => Primary.OnOutputHeld(0, 0, 1);
        BackupHost.OutputHeld = () => Backup.OnOutputHeld(0, 0, 1);
        Primary.SyncFinished += s => { lock (PrimarySyncs) PrimarySyncs.Add(s); };
        Backup.SyncFinished += s => { lock (BackupSyncs) BackupSyncs.Add(s); };

        // The backup (higher id) listens, the primary dials.
        var backupLink = new ReplicaSyncLink(Backup.Engine, TransportTestKit.Options(2, eps, Log.Sink).Identity, 1,
            new IPEndPoint(IPAddress.Loopback, 0), eps[1], TimeSpan.FromSeconds(5), Log.Sink, ucx: ucx);
        _links.Add(backupLink);
        _links.Add(new ReplicaSyncLink(Primary.Engine, TransportTestKit.Options(1, eps, Log.Sink).Identity, 2,
            eps[1], backupLink.ListenEndpoint!, TimeSpan.FromSeconds(5), Log.Sink, ucx: ucx));

        Assert.True(TransportTestKit.WaitUntil(() => _transports.All(t => t.Peers.All(t.IsConnected))), Log.ToString());
        foreach (var d in _drivers) d.Start();
        Assert.True(TransportTestKit.WaitUntil(() => _drivers[0].IsLeader, 10000), "node 1 never led\n" + Log);
        Assert.True(TransportTestKit.WaitUntil(() => _links.All(l => l.Connected), 10000), "sync link down\n" + Log);
        PrimaryHost.MainImpl.Invoke(Primary.Start);
        BackupHost.MainImpl.Invoke(Backup.Start);
    }

    public TestLog Log { get; } = new();
    public ConsensusDriver PrimaryDriver => _drivers[0];
    public FakeReplicaHost PrimaryHost { get; }
    public FakeReplicaHost BackupHost { get; }
    public Plover.Node.Replica Primary { get; }
    public Plover.Node.Replica Backup { get; }
    public List<SyncStats> PrimarySyncs { get; } = new();
    public List<SyncStats> BackupSyncs { get; } = new();

    /// <summary>A client frame: 4-byte sequence number, then bytes derived from it.</summary>
    public static byte[] Frame(int seq, int length = 200)
    {
        var f = new byte[length];
        for (int i = 4; i < f.Length; i++) f[i] = (byte)(seq * 31 + i);
        BinaryPrimitives.WriteInt32LittleEndian(f, seq);
        return f;
    }

    /// <summary>Frames from the outside world arrive at a replica's netdev (on its main thread, as net_to_guest does).</summary>
    public static void Arrive(FakeReplicaHost host, Plover.Node.Replica replica, int firstSeq, int count) =>
        host.MainImpl.Invoke(() =>
        {
            for (int s = firstSeq; s < firstSeq + count; s++)
                Assert.True(replica.OnFrameToGuest(0, Frame(s)));
        });

    /// <summary>Checkpoint mode: frames arrive at a replica's netdev; those it lets through reach its guest as
    /// QEMU would deliver them. Returns how many it let through.</summary>
    public static int ArrivePassThrough(FakeReplicaHost host, Plover.Node.Replica replica, int firstSeq, int count)
    {
        int passed = 0;
        host.MainImpl.Invoke(() =>
        {
            for (int s = firstSeq; s < firstSeq + count; s++)
            {
                var frame = Frame(s);
                if (replica.OnFrameToGuest(0, frame)) continue;
                host.Inject(0, frame);
                passed++;
            }
        });
        return passed;
    }

    public int CompletedSyncs(List<SyncStats> list)
    {
        lock (list) return list.Count(s => s.Outcome == SyncOutcome.Completed);
    }

    /// <summary>Proposes a SYNC on the primary and waits until both sides completed it.</summary>
    public void SyncNow()
    {
        int before = CompletedSyncs(PrimarySyncs);
        int beforeBackup = CompletedSyncs(BackupSyncs);
        Assert.True(Primary.ProposeSync(), "the primary refused to propose a sync\n" + Log);
        Assert.True(TransportTestKit.WaitUntil(() => CompletedSyncs(PrimarySyncs) > before && CompletedSyncs(BackupSyncs) > beforeBackup, 30000),
            "sync did not complete on both sides\n" + Log);
    }

    /// <summary>Cuts the primary off the network (its consensus and sync connections); its VM and driver keep running.</summary>
    public void IsolatePrimary()
    {
        _links[1].Dispose();
        _transports[0].Dispose();
    }

    public void Dispose()
    {
        foreach (var l in _links) l.Dispose();
        Primary.Dispose();
        Backup.Dispose();
        foreach (var d in _drivers) d.Dispose();
        foreach (var t in _transports) t.Dispose();
        PrimaryHost.Dispose();
        BackupHost.Dispose();
    }
}
