using System.Net;
using System.Security.Cryptography;
using Plover.Config;
using Plover.Guard;
using Plover.Node;
using Plover.Sync;
using Plover.Tests.Transport;
using Xunit;

namespace Plover.Tests.Replica;

/// <summary>
/// Failover and re-protection with whole nodes from a config (as QEMU builds them) and a witness: a killed primary
/// is replaced by its backup, which serves unprotected; the primary restarted with an empty VM finds the running
/// cluster, joins it as a backup through a full sync, and the new primary is protected again. A lost backup is
/// dropped by a ROLE entry and the primary's held output then leaves.
/// </summary>
public sealed class ReplicaRejoinTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("plover-rejoin-").FullName;
    private readonly TestLog _log = new();
    private readonly int[] _ports = TransportTestKit.FreePorts(5);
    private readonly List<IDisposable> _cleanup = new();

    public void Dispose()
    {
        for (int i = _cleanup.Count - 1; i >= 0; i--) _cleanup[i].Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private ClusterConfig Config()
    {
        TestKeys.WriteKeyFiles(_dir, [1, 2, 3]);
        string json = $$"""
        {
          "cluster": "rejoin-test",
          "keyFile": "observer.key",
          {{TestKeys.ObserversJson}},
          "nodes": [
            {"id": 1, "role": "primary", "address": "127.0.0.1:{{_ports[0]}}", {{TestKeys.NodeJson(1)}}},
            {"id": 2, "role": "backup",  "address": "127.0.0.1:{{_ports[1]}}", {{TestKeys.NodeJson(2)}}},
            {"id": 3, "role": "witness", "address": "127.0.0.1:{{_ports[2]}}", {{TestKeys.NodeJson(3)}}}
          ],
          "timeouts": {"heartbeatMs": 5, "electionMinMs": 150, "electionMaxMs": 300, "startupMs": 20000},
          "hashing": {"threads": 1}
        }
        """;
        return ClusterConfig.Parse(json, _dir);
    }

    private IPEndPoint SyncEndpoint(NodeConfig n) => new(IPAddress.Loopback, n.Id == 1 ? _ports[3] : _ports[4]);

    private (ReplicaNode Node, FakeReplicaHost Host) StartNode(ClusterConfig config, int id, int seed)
    {
        var host = new FakeReplicaHost($"node{id}-{seed}", ReplicaCluster.Blocks, seed, diverge: id == 1);
        ReplicaNode? node = null;
        host.MainImpl.Invoke(() => node = ReplicaNode.Start(config, id, host, null, _log.Sink, syncEndpoint: SyncEndpoint));
        host.OutputHeld = () => node!.Replica?.OnOutputHeld(0, 0, 1);
        return (node!, host);
    }

    /// <summary>The witness and both replicas of a fresh cluster, ready (the caller owns the replicas' cleanup).</summary>
    private (ReplicaNode N1, FakeReplicaHost H1, ReplicaNode N2, FakeReplicaHost H2) StartCluster(ClusterConfig config)
    {
        var witness = new WitnessNode(config, 3, _log.Sink);
        _cleanup.Add(witness);
        var witnessStart = Task.Run(() => witness.Start(() => false));
        var (n1, h1) = StartNode(config, 1, 5);
        var (n2, h2) = StartNode(config, 2, 6);
        Ready(n1, n2);
        Assert.Null(witnessStart.Result);
        return (n1, h1, n2, h2);
    }

    private void Ready(params ReplicaNode[] nodes) =>
        Assert.True(TransportTestKit.WaitUntil(() => nodes.All(n => n.ReadinessProblem() is null), 20000),
            string.Join("; ", nodes.Select(n => n.ReadinessProblem())) + "\n" + _log);

    private void SyncNow(ReplicaNode primary, params ReplicaNode[] both)
    {
        var before = both.Select(n => n.Replica!.SyncsCompleted).ToArray();
        Assert.True(TransportTestKit.WaitUntil(() => primary.Replica!.ProposeSync(), 10000), "no sync proposed\n" + _log);
        Assert.True(TransportTestKit.WaitUntil(() => both.Select((n, i) => n.Replica!.SyncsCompleted > before[i]).All(x => x), 30000),
            "sync did not complete\n" + _log);
    }

    [Fact]
    public void A_killed_primary_is_replaced_and_when_restarted_rejoins_as_the_backup()
    {
        var config = Config();
        var (n1, h1, n2, h2) = StartCluster(config);
        _cleanup.Add(h2); _cleanup.Add(n2);
        ReplicaCluster.Arrive(h1, n1.Replica!, 1, 20);
        Assert.True(TransportTestKit.WaitUntil(() => h2.InjectedSnapshot().Length == 20, 15000), _log.ToString());
        SyncNow(n1, n1, n2);
        Assert.Equal(Enumerable.Range(1, 20), h1.Nic.Sent);

        // kill the primary: the backup is elected, promoted, announces, and serves without a backup
        n1.Dispose();
        h1.Dispose();
        Assert.True(TransportTestKit.WaitUntil(() => n2.Replica!.Role == ReplicaRole.Primary && n2.Replica.RunsAlone, 20000), _log.ToString());
        Assert.True(TransportTestKit.WaitUntil(() => h2.Announces == 1, 5000), _log.ToString());
        ReplicaCluster.Arrive(h2, n2.Replica!, 100, 10);
        Assert.True(TransportTestKit.WaitUntil(() => h2.Nic.Sent.Count == 10, 15000), _log.ToString());   // unprotected: out at once
        Assert.Equal(Enumerable.Range(100, 10), h2.Nic.Sent);

        // restart node 1 with an empty VM: it finds the running cluster and joins as backup through a full sync
        var (n1b, h1b) = StartNode(config, 1, 7);
        _cleanup.Add(h1b); _cleanup.Add(n1b);
        Assert.True(TransportTestKit.WaitUntil(() => n1b.Mode is not null, 20000), _log.ToString());
        Assert.Equal(StartMode.Join, n1b.Mode);
        Assert.True(TransportTestKit.WaitUntil(() => n1b.Replica is { IsJoining: false } && !n2.Replica.RunsAlone, 30000), _log.ToString());
        Assert.Equal(ReplicaRole.Backup, n1b.Replica!.Role);
        Assert.Equal(GuardState.Holding, n2.Replica.Guard.State);
        Assert.Null(h1b.MemoryImpl.FirstDifference(h2.MemoryImpl));

        // protected again: new inputs reach both in order, output waits for the new backup's ack
        ReplicaCluster.Arrive(h2, n2.Replica, 200, 5);
        Assert.True(TransportTestKit.WaitUntil(() => h1b.InjectedSnapshot().Length == 5, 15000), _log.ToString());
        Assert.Equal(10, h2.Nic.Sent.Count);
        SyncNow(n2, n2, n1b);
        Assert.True(TransportTestKit.WaitUntil(() => h2.Nic.Sent.Count == 15, 10000), _log.ToString());
        Assert.Null(h1b.MemoryImpl.FirstDifference(h2.MemoryImpl));
        Assert.Equal(h2.InjectedSnapshot().TakeLast(5).Select(Convert.ToHexString), h1b.InjectedSnapshot().Select(Convert.ToHexString));
        Assert.Equal(0, h1b.Violations + h2.Violations);
        // one node released output per term
        Assert.Empty(n1b.Replica.ReleasedByTerm);
        Assert.DoesNotContain(n2.Replica.ReleasedByTerm.Keys, t => t == 1);
    }

    [Fact]
    public void A_lost_backup_is_dropped_by_a_ROLE_entry_and_the_held_output_leaves()
    {
        var config = Config();
        var (n1, h1, n2, h2) = StartCluster(config);
        _cleanup.Add(h1); _cleanup.Add(n1);
        ReplicaCluster.Arrive(h1, n1.Replica!, 1, 10);
        Assert.True(TransportTestKit.WaitUntil(() => h1.InjectedSnapshot().Length == 10, 15000), _log.ToString());
        Assert.Empty(h1.Nic.Sent);   // held: no sync yet

        n2.Dispose();
        h2.Dispose();
        Assert.True(TransportTestKit.WaitUntil(() => n1.Replica!.RunsAlone, 20000), _log.ToString());
        Assert.True(TransportTestKit.WaitUntil(() => h1.Nic.Sent.Count == 10, 5000), _log.ToString());
        Assert.Equal(ReplicaRole.Primary, n1.Replica!.Role);
        Assert.True(TransportTestKit.WaitUntil(() => n1.Replica.Events.Any(e => e.What.Contains("running unprotected")), 5000));
        Assert.Contains("running unprotected", n1.Status().Problem);
        Assert.False(n1.Status().Protected);
    }
}
