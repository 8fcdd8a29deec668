using System.Net;
using System.Security.Cryptography;
using Plover.Config;
using Plover.Node;
using Plover.Sync;
using Plover.Tests.Transport;
using Plover.Transport;
using Xunit;

namespace Plover.Tests.Replica;

/// <summary>Replica nodes built from a cluster config file, as QEMU will build them, with the witness beside them.</summary>
public sealed class ReplicaNodeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("plover-replica-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private ClusterConfig Config(int[] ports)
    {
        TestKeys.WriteKeyFiles(_dir, [1, 2, 3]);
        string json = $$"""
        {
          "cluster": "replica-test",
          "keyFile": "observer.key",
          {{TestKeys.ObserversJson}},
          "nodes": [
            {"id": 1, "role": "primary", "address": "127.0.0.1:{{ports[0]}}", {{TestKeys.NodeJson(1)}}},
            {"id": 2, "role": "backup",  "address": "127.0.0.1:{{ports[1]}}", {{TestKeys.NodeJson(2)}}},
            {"id": 3, "role": "witness", "address": "127.0.0.1:{{ports[2]}}", {{TestKeys.NodeJson(3)}}}
          ],
          "timeouts": {"heartbeatMs": 1, "electionMinMs": 200, "electionMaxMs": 400},
          "sync": {"idleWindowUs": 100, "idleThresholdUs": 25, "idleWindows": 3, "maxEpochMs": 200},
          "hashing": {"threads": 1}
        }
        """;
        return ClusterConfig.Parse(json, _dir);
    }

    /// <summary>A three-node config on free ports, and each replica's sync listener on a port of its own.</summary>
    private (ClusterConfig Config, Func<NodeConfig, IPEndPoint> SyncEndpoint) Cluster()
    {
        var ports = TransportTestKit.FreePorts(5);
        var syncPorts = new Dictionary<int, int> { [1] = ports[3], [2] = ports[4] };
        return (Config(ports), n => new IPEndPoint(IPAddress.Loopback, syncPorts[n.Id]));
    }

    [Fact]
    public void Nodes_from_a_config_replicate_inputs_and_sync()
    {
        var (config, SyncEndpoint) = Cluster();
        var log = new TestLog();

        using var witness = new WitnessNode(config, 3, log.Sink);
        var witnessStart = Task.Run(() => witness.Start(() => false));

        using var primaryHost = new FakeReplicaHost("primary", ReplicaCluster.Blocks, seed: 5, diverge: true);
        using var backupHost = new FakeReplicaHost("backup", ReplicaCluster.Blocks, seed: 6, diverge: false);
        ReplicaNode? primary = null, backup = null;
        try
        {
            primaryHost.MainImpl.Invoke(() => primary = ReplicaNode.Start(config, 1, primaryHost, null, log.Sink, syncEndpoint: SyncEndpoint));
            backupHost.MainImpl.Invoke(() => backup = ReplicaNode.Start(config, 2, backupHost, null, log.Sink, syncEndpoint: SyncEndpoint));
            Assert.True(TransportTestKit.WaitUntil(() => primary!.Driver is { IsLeader: true } && primary.SyncLinkConnected &&
                                                        backup!.SyncLinkConnected && primary.ReadinessProblem() is null, 15000), log.ToString());
            Assert.Null(witnessStart.Result);
            Assert.Equal((StartMode.Fresh, StartMode.Fresh, StartMode.Fresh), (primary!.Mode, backup!.Mode, witness.Mode));
            Assert.Equal(ReplicaRole.Primary, primary.Replica!.Role);
            Assert.Equal(ReplicaRole.Backup, backup.Replica!.Role);
            primaryHost.MainImpl.Invoke(() => { });   // replica.Start was posted before: it ran
            backupHost.MainImpl.Invoke(() => { });

            ReplicaCluster.Arrive(primaryHost, primary.Replica, 1, 30);
            Assert.True(TransportTestKit.WaitUntil(() => backupHost.InjectedSnapshot().Length == 30 && primaryHost.InjectedSnapshot().Length == 30, 15000), log.ToString());
            Assert.Empty(primaryHost.Nic.Sent);

            Assert.True(primary.Replica.ProposeSync());
            Assert.True(TransportTestKit.WaitUntil(() => primary.Replica.SyncsCompleted == 1 && backup.Replica.SyncsCompleted == 1, 30000), log.ToString());
            Assert.Null(primaryHost.MemoryImpl.FirstDifference(backupHost.MemoryImpl));
            Assert.Equal(Enumerable.Range(1, 30), primaryHost.Nic.Sent);
            Assert.Equal(0, primaryHost.Violations + backupHost.Violations);
        }
        finally
        {
            primary?.Dispose();
            backup?.Dispose();
        }
    }

    /// <summary>Issue 15: a sync was writing a replica's drive images when it stopped (<see cref="TornImageMarks"/>).
    /// As the configured primary of a fresh cluster it must not run its guest on them: its start fails at once,
    /// saying why. As the backup it starts, and its first (full) sync repairs the drives and removes the mark.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_replica_whose_drive_images_are_marked_torn_never_founds_a_cluster_but_is_repaired_as_backup(bool primaryTorn)
    {
        var log = new TestLog();
        var primaryDisks = new SyntheticDisks(("data0", 64UL << 10));
        var backupDisks = new SyntheticDisks(("data0", 64UL << 10));
        primaryDisks.GuestWrite(0, 8192, [1, 2, 3]);
        backupDisks.Bytes(0).Fill(0x5a);   // half-written: other bytes everywhere
        (primaryTorn ? primaryDisks : backupDisks).Torn = true;
        using var nodes = new ReplicasWithDisks(Cluster(), log, primaryDisks, backupDisks);
        var (primary, backup) = (nodes.Primary, nodes.Backup);
        if (primaryTorn)
        {
            Assert.True(TransportTestKit.WaitUntil(() => primary.StartFailed, 15000), log.ToString());
            string problem = primary.ReadinessProblem()!;
            Assert.Contains("marked torn", problem);
            Assert.Contains(TornImageMarks.Suffix, problem);
            Assert.Null(primary.Replica);                   // no replica: the guest never runs
            Assert.Equal(0, nodes.PrimaryHost.VmImpl.Starts);
            Assert.True(primaryDisks.Torn);
            return;
        }
        Assert.True(TransportTestKit.WaitUntil(() => primary.Driver is { IsLeader: true } && primary.SyncLinkConnected &&
                                                    backup.SyncLinkConnected && primary.ReadinessProblem() is null, 15000), log.ToString());
        Assert.False(backup.StartFailed);
        Assert.Contains("marked torn; it enters as a backup", log.ToString());
        Assert.False(backup.Driver!.CanCampaign);   // it must not take over on torn images
        nodes.PrimaryHost.MainImpl.Invoke(() => { });
        nodes.BackupHost.MainImpl.Invoke(() => { });
        Assert.True(primary.Replica!.ProposeSync());
        Assert.True(TransportTestKit.WaitUntil(() => primary.Replica.SyncsCompleted == 1 && backup.Replica!.SyncsCompleted == 1, 30000), log.ToString());
        Assert.True(TransportTestKit.WaitUntil(() => backup.Driver.CanCampaign, 5000), log.ToString());
        Assert.False(backupDisks.Torn);
        Assert.True(primaryDisks.Bytes(0).SequenceEqual(backupDisks.Bytes(0)));
        // the fresh primary's images serve at one past both replicas' generations; the backup took it at the sync
        Assert.Equal(new DiskGeneration(1, Primary: true), primaryDisks.Generation);
        Assert.Equal(new DiskGeneration(1, Primary: false), backupDisks.Generation);
    }

    [Theory]
    [InlineData(2, true, 3, true, false)]     // the backup was promoted after this node's last generation
    [InlineData(3, false, 3, true, false)]    // same generation, but the other one served it
    [InlineData(3, true, 3, false, true)]     // the other one is this one's synced copy
    [InlineData(4, true, 3, true, true)]
    public void A_fresh_primary_refuses_to_start_over_newer_images_of_its_peer(ulong mine, bool minePrimary, ulong theirs, bool theirsPrimary, bool starts)
    {
        var log = new TestLog();
        var primaryDisks = new SyntheticDisks(("data0", 64UL << 10)) { Generation = new DiskGeneration(mine, minePrimary) };
        var backupDisks = new SyntheticDisks(("data0", 64UL << 10)) { Generation = new DiskGeneration(theirs, theirsPrimary) };
        using var nodes = new ReplicasWithDisks(Cluster(), log, primaryDisks, backupDisks);
        var primary = nodes.Primary;
        Assert.True(TransportTestKit.WaitUntil(() => primary.StartFailed || primary.Replica is not null, 15000), log.ToString());
        Assert.Equal(starts, !primary.StartFailed);
        if (starts)
        {
            Assert.Equal(new DiskGeneration(Math.Max(mine, theirs) + 1, Primary: true), primaryDisks.Generation);
            return;
        }
        string problem = primary.ReadinessProblem()!;
        Assert.Contains("node 2's drive images are newer", problem);
        Assert.Contains("Start the cluster with node 2 configured as primary", problem);
        Assert.Null(primary.Replica);
        Assert.Equal(0, nodes.PrimaryHost.VmImpl.Starts);
        Assert.Equal(new DiskGeneration(mine, minePrimary), primaryDisks.Generation);   // nothing recorded
    }

    /// <summary>A fresh backup's images are not known to be its primary's before its first sync: if the primary
    /// stopped then, booting them could lose what the primary's images hold. It does not campaign until that sync
    /// completed, whatever the generations say.</summary>
    [Theory]
    [InlineData(3, true, 3, false)]    // synced at 3 while the primary served 3: the primary may have gone on alone
    [InlineData(4, true, 2, true)]     // the other replica served after this one's last sync
    [InlineData(0, false, 0, false)]   // no records: the operator's images, equal or not
    public void A_fresh_backup_with_drives_takes_over_only_after_its_first_sync(ulong primaryGen, bool primaryServed, ulong backupGen, bool backupServed)
    {
        var log = new TestLog();
        var primaryDisks = new SyntheticDisks(("data0", 64UL << 10)) { Generation = new DiskGeneration(primaryGen, primaryServed) };
        var backupDisks = new SyntheticDisks(("data0", 64UL << 10)) { Generation = new DiskGeneration(backupGen, backupServed) };
        using var nodes = new ReplicasWithDisks(Cluster(), log, primaryDisks, backupDisks);
        var (primary, backup) = (nodes.Primary, nodes.Backup);
        Assert.True(TransportTestKit.WaitUntil(() => primary.Driver is { IsLeader: true } && primary.SyncLinkConnected &&
                                                    backup.SyncLinkConnected && backup.Replica is not null, 15000), log.ToString());
        Assert.False(backup.Driver!.CanCampaign);
        Assert.Contains("it does not take over before its first sync", log.ToString());
        nodes.PrimaryHost.MainImpl.Invoke(() => { });
        nodes.BackupHost.MainImpl.Invoke(() => { });
        Assert.True(primary.Replica!.ProposeSync());
        Assert.True(TransportTestKit.WaitUntil(() => backup.Replica!.SyncsCompleted == 1 && backup.Driver.CanCampaign, 30000), log.ToString());
    }

    /// <summary>A fresh cluster: the witness, node 1 (configured primary) and node 2 (backup) started on fake hosts
    /// with the given drives.</summary>
    private sealed class ReplicasWithDisks : IDisposable
    {
        public readonly FakeReplicaHost PrimaryHost, BackupHost;
        public readonly ReplicaNode Primary, Backup;
        private readonly WitnessNode _witness;

        public ReplicasWithDisks((ClusterConfig Config, Func<NodeConfig, IPEndPoint> SyncEndpoint) cluster, TestLog log,
                                 IDiskHost primaryDisks, IDiskHost backupDisks)
        {
            var (config, syncEndpoint) = cluster;
            _witness = new WitnessNode(config, 3, log.Sink);
            _ = Task.Run(() => _witness.Start(() => false));
            PrimaryHost = new FakeReplicaHost("primary", ReplicaCluster.Blocks, seed: 5, diverge: false) { Disks = primaryDisks };
            BackupHost = new FakeReplicaHost("backup", ReplicaCluster.Blocks, seed: 6, diverge: false) { Disks = backupDisks };
            ReplicaNode? primary = null, backup = null;
            PrimaryHost.MainImpl.Invoke(() => primary = ReplicaNode.Start(config, 1, PrimaryHost, null, log.Sink, syncEndpoint: syncEndpoint));
            BackupHost.MainImpl.Invoke(() => backup = ReplicaNode.Start(config, 2, BackupHost, null, log.Sink, syncEndpoint: syncEndpoint));
            (Primary, Backup) = (primary!, backup!);
        }

        public void Dispose()
        {
            Primary.Dispose();
            Backup.Dispose();
            PrimaryHost.Dispose();
            BackupHost.Dispose();
            _witness.Dispose();
        }
    }

    [Fact]
    public void The_witness_is_not_a_replica()
    {
        var config = Config(TransportTestKit.FreePorts(3));
        using var host = new FakeReplicaHost("w", ReplicaCluster.Blocks, seed: 1, diverge: false);
        var e = Assert.Throws<ArgumentException>(() => ReplicaNode.Start(config, 3, host, null, _ => { }));
        Assert.Contains("witness", e.Message);
    }
}
