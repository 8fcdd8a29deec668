using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Plover.Config;
using Plover.Metrics;
using Plover.Node;
using Plover.Sync;
using Plover.Tests.Replica;
using Plover.Tests.Transport;
using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Metrics;

/// <summary>
/// The Prometheus endpoints of a whole cluster in one process, built from a config with a metrics address per node
/// (the witness serves its own from the config, the replicas are served as QEMU's library serves them), scraped
/// with HttpClient while inputs flow and syncs run: the figures move, and they are the nodes' own.
/// </summary>
public sealed class NodeMetricsTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("plover-metrics-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Consensus ports for nodes 1-3, sync ports for 1-2, metrics ports for 1-3; no metrics port is a
    /// replica's consensus port + 1 (the config refuses that).</summary>
    private static int[] Ports()
    {
        for (int attempt = 0; ; attempt++)
        {
            int[] p = TransportTestKit.FreePorts(8);
            if (!p[5..].Any(m => m == p[0] + 1 || m == p[1] + 1) || attempt == 20) return p;
        }
    }

    private ClusterConfig Config(int[] p, bool metrics = true)
    {
        TestKeys.WriteKeyFiles(_dir, [1, 2, 3]);
        string M(int i) => metrics ? $", \"metrics\": \"127.0.0.1:{p[5 + i]}\"" : "";
        return ClusterConfig.Parse($$"""
        {
          "cluster": "metrics-test",
          "keyFile": "observer.key",
          {{TestKeys.ObserversJson}},
          "nodes": [
            {"id": 1, "role": "primary", "address": "127.0.0.1:{{p[0]}}", {{TestKeys.NodeJson(1)}}{{M(0)}}},
            {"id": 2, "role": "backup",  "address": "127.0.0.1:{{p[1]}}", {{TestKeys.NodeJson(2)}}{{M(1)}}},
            {"id": 3, "role": "witness", "address": "127.0.0.1:{{p[2]}}", {{TestKeys.NodeJson(3)}}{{M(2)}}}
          ],
          "timeouts": {"heartbeatMs": 1, "electionMinMs": 200, "electionMaxMs": 400},
          "hashing": {"threads": 1}
        }
        """, _dir);
    }

    private static readonly string[] Moving =
    [
        "plover_inputs_proposed_total", "plover_input_frames_stolen_total", "plover_inputs_injected_total",
        "plover_syncs_total{outcome=\"completed\"}", "plover_sync_guest_pause_seconds_count", "plover_sync_duration_seconds_count",
        "plover_sync_union_pages_total", "plover_commit_latency_seconds_count", "plover_output_frames_released_total",
        "plover_wire_sent_bytes_total{channel=\"consensus\",kind=\"entries\"}",
        "plover_wire_sent_bytes_total{channel=\"synclink\",kind=\"bitmaps\"}",
    ];

    [Fact]
    public async Task A_cluster_under_load_is_scraped_and_its_figures_move()
    {
        int[] p = Ports();
        var config = Config(p);
        var log = new TestLog();
        IPEndPoint SyncEndpoint(NodeConfig n) => new(IPAddress.Loopback, p[2 + n.Id]);

        using var witness = new WitnessNode(config, 3, log.Sink);
        var witnessStart = Task.Run(() => witness.Start(() => false));
        using var primaryHost = new FakeReplicaHost("primary", ReplicaCluster.Blocks, seed: 5, diverge: true);
        using var backupHost = new FakeReplicaHost("backup", ReplicaCluster.Blocks, seed: 6, diverge: false);
        ReplicaNode? primary = null, backup = null;
        // as QemuNode serves them: from before the replica exists (role "starting")
        using var primaryMetrics = NodeMetrics.ForReplica(config, config.Node(1), () => primary).Serve(config.Node(1).Metrics!, log.Sink);
        using var backupMetrics = NodeMetrics.ForReplica(config, config.Node(2), () => backup).Serve(config.Node(2).Metrics!, log.Sink);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        string Url(int node) => $"http://{config.Node(node).MetricsAddress}/metrics";

        var before = await PrometheusText.Scrape(http, Url(1));
        Assert.Equal(1, before["plover_role{role=\"starting\"}"]);
        Assert.Equal(0, before["plover_protected"]);
        Assert.Equal(1, before["plover_node_info{cluster=\"metrics-test\",node=\"1\",config_role=\"primary\"}"]);

        var stop = new CancellationTokenSource();
        Task? load = null;
        try
        {
            primaryHost.MainImpl.Invoke(() => primary = ReplicaNode.Start(config, 1, primaryHost, null, log.Sink, syncEndpoint: SyncEndpoint));
            backupHost.MainImpl.Invoke(() => backup = ReplicaNode.Start(config, 2, backupHost, null, log.Sink, syncEndpoint: SyncEndpoint));
            Assert.True(TransportTestKit.WaitUntil(() => primary!.Driver is { IsLeader: true } && primary.ReadinessProblem() is null &&
                                                        backup!.ReadinessProblem() is null, 20000), log.ToString());
            Assert.Null(await witnessStart);
            Assert.NotNull(witness.MetricsEndpoint);
            primaryHost.MainImpl.Invoke(() => { });   // replica.Start, posted before, ran
            backupHost.MainImpl.Invoke(() => { });

            // Load: frames arrive at the primary without pause, and a sync every 100 ms.
            var replica = primary!.Replica!;
            load = Task.Run(() =>
            {
                int seq = 1;
                long nextSync = 0;
                while (!stop.IsCancellationRequested)
                {
                    ReplicaCluster.Arrive(primaryHost, replica, seq, 8);
                    seq += 8;
                    if (Environment.TickCount64 >= nextSync)
                    {
                        replica.ProposeSync();
                        nextSync = Environment.TickCount64 + 100;
                    }
                    Thread.Sleep(3);
                }
            });

            var scrapes = new List<(PrometheusText Primary, PrometheusText Backup, PrometheusText Witness)>();
            for (int i = 0; i < 4; i++)
            {
                await Task.Delay(700);
                scrapes.Add((await PrometheusText.Scrape(http, Url(1)), await PrometheusText.Scrape(http, Url(2)),
                             await PrometheusText.Scrape(http, Url(3))));
            }
            stop.Cancel();
            await load;

            foreach (var (ps, bs, ws) in scrapes)
            {
                Assert.Equal(1, ps["plover_role{role=\"primary\"}"]);
                Assert.Equal(0, ps["plover_role{role=\"starting\"}"]);
                Assert.Equal(1, ps["plover_consensus_role{role=\"leader\"}"]);
                Assert.Equal(1, ps["plover_protected"]);
                Assert.Equal(1, ps["plover_sync_link_up"]);
                Assert.Equal(1, bs["plover_role{role=\"backup\"}"]);
                Assert.Equal(1, bs["plover_consensus_role{role=\"follower\"}"]);
                Assert.Equal(0, bs["plover_protected"]);
                Assert.Equal(1, ws["plover_role{role=\"witness\"}"]);
                Assert.Equal(1, ws["plover_consensus_role{role=\"follower\"}"]);
                Assert.Equal(1, ws["plover_node_info{cluster=\"metrics-test\",node=\"3\",config_role=\"witness\"}"]);
                foreach (var s in new[] { ps, bs, ws }) Assert.True(s["plover_term"] >= 1);
                Assert.Equal(ps["plover_term"], ws["plover_term"]);
                Assert.Equal(1, ws["plover_leader_id"]);
                foreach (var s in new[] { ps, bs })
                {
                    // every sync counted is in both histograms: taken together from the engine's accounting
                    double syncs = s.Sum("plover_syncs_total");
                    Assert.Equal(syncs, s.Buckets("plover_sync_guest_pause_seconds")[^1].Count);
                    Assert.Equal(syncs, s.Buckets("plover_sync_duration_seconds")[^1].Count);
                    Assert.InRange(s["plover_sync_identical_percent"], 0, 100);
                    // the disk series are there, and 0 without replicated drives (SyncDiskFiguresTests: with drives)
                    Assert.Equal(0, s["plover_sync_disk_union_blocks_total"]);
                    Assert.Equal(0, s["plover_sync_disk_wire_bytes_total"]);
                }
                ps.Buckets("plover_commit_latency_seconds");
            }
            for (int i = 1; i < scrapes.Count; i++)
                foreach (var (now, then) in new[] { (scrapes[i].Primary, scrapes[i - 1].Primary), (scrapes[i].Backup, scrapes[i - 1].Backup),
                                                    (scrapes[i].Witness, scrapes[i - 1].Witness) })
                    AssertCountersDidNotFall(then, now);

            var (first, last) = (scrapes[0], scrapes[^1]);
            foreach (string series in Moving)
                Assert.True(last.Primary[series] > first.Primary[series], $"primary {series}: {first.Primary[series]} then {last.Primary[series]}");
            foreach (string series in new[] { "plover_inputs_injected_total", "plover_input_frames_injected_total", "plover_sync_union_pages_total",
                                              "plover_syncs_total{outcome=\"completed\"}", "plover_output_frames_discarded_total",
                                              "plover_wire_received_bytes_total{channel=\"consensus\",kind=\"entries\"}",
                                              "plover_wire_received_bytes_total{channel=\"synclink\",kind=\"pages\"}" })
                Assert.True(last.Backup[series] > first.Backup[series], $"backup {series}: {first.Backup[series]} then {last.Backup[series]}");
            foreach (string series in new[] { "plover_committed_inputs_total", "plover_committed_entries_total", "plover_commit_index",
                                              "plover_wire_received_bytes_total{channel=\"consensus\",kind=\"entries\"}",
                                              "plover_wire_sent_bytes_total{channel=\"consensus\",kind=\"acks\"}" })
                Assert.True(last.Witness[series] > first.Witness[series], $"witness {series}: {first.Witness[series]} then {last.Witness[series]}");
            Assert.True(last.Primary["plover_sync_divergent_pages_total"] > 0, "the primary's guest diverges: some pages are sent");

            // Once the load stopped and the last sync ended, the figures are exactly the nodes' own.
            var engine = replica.Engine.Metrics;
            long settled = -1;
            Assert.True(TransportTestKit.WaitUntil(() =>
            {
                long syncs = engine.Totals.Syncs;
                bool same = syncs == settled && replica.SyncsCompleted + replica.SyncsAborted == syncs &&
                            backupHost.InjectedSnapshot().Length == primaryHost.InjectedSnapshot().Length;
                settled = syncs;
                Thread.Sleep(300);
                return same;
            }, 20000), log.ToString());
            var final = await PrometheusText.Scrape(http, Url(1));
            var totals = engine.Totals;
            Assert.Equal(totals.Completed, final["plover_syncs_total{outcome=\"completed\"}"]);
            Assert.Equal(totals.Aborted, final["plover_syncs_total{outcome=\"aborted\"}"]);
            Assert.Equal(totals.Syncs, final["plover_sync_guest_pause_seconds_count"]);
            Assert.Equal(totals.PauseUs / 1e6, final["plover_sync_guest_pause_seconds_sum"], totals.PauseUs / 1e6 * 0.03 + 1e-6);
            Assert.Equal((double)totals.UnionPages, final["plover_sync_union_pages_total"]);
            Assert.Equal((double)totals.IdenticalPages, final["plover_sync_identical_pages_total"]);
            Assert.Equal(100.0 * totals.IdenticalPages / totals.UnionPages, final["plover_sync_identical_percent"], 6);
            Assert.Equal(replica.EntriesProposed, final["plover_inputs_proposed_total"]);
            Assert.Equal(replica.FramesStolen, final["plover_input_frames_stolen_total"]);
            Assert.Equal(replica.InputsInjected, final["plover_inputs_injected_total"]);
            Assert.Equal(replica.Guard.FramesReleased, final["plover_output_frames_released_total"]);
            Assert.Equal(replica.CommitLatency.Count, final["plover_commit_latency_seconds_count"]);
            Assert.Equal(replica.CommitLatency.MeanUs * replica.CommitLatency.Count / 1e6, final["plover_commit_latency_seconds_sum"],
                         replica.CommitLatency.MeanUs * replica.CommitLatency.Count / 1e6 * 0.03 + 1e-6);
            Assert.True(final["plover_commit_index"] > 0);
            Assert.Equal((double)primary.Traffic.SentBytes(WireChannel.SyncLink, WireKind.Pages),
                         final["plover_wire_sent_bytes_total{channel=\"synclink\",kind=\"pages\"}"]);
            output.WriteLine($"{totals.Completed} syncs, {replica.EntriesProposed} inputs proposed, identical {final["plover_sync_identical_percent"]:F1}%, " +
                             $"commit latency p50 {replica.CommitLatency.PercentileUs(0.5):F0} us; scrapes served: primary {primaryMetrics.Scrapes}, " +
                             $"witness {witness.MetricsEndpoint!.Scrapes}");
            output.WriteLine(string.Join("\n", final.Text.Split('\n').Where(l => l.StartsWith("plover_sync_guest_pause_seconds", StringComparison.Ordinal))));
        }
        finally
        {
            stop.Cancel();
            if (load is not null) try { await load; } catch (Exception) { }
            primary?.Dispose();
            backup?.Dispose();
        }
    }

    /// <summary>Every counter (and histogram bucket, count and sum) of the earlier scrape is still there and not
    /// smaller in the later one.</summary>
    private static void AssertCountersDidNotFall(PrometheusText then, PrometheusText now)
    {
        foreach (string line in then.Text.Split('\n'))
        {
            if (line.Length == 0 || line.StartsWith('#')) continue;
            string series = line[..line.LastIndexOf(' ')];
            string name = series.Split('{')[0];
            bool counter = name.EndsWith("_total", StringComparison.Ordinal) || name.EndsWith("_bucket", StringComparison.Ordinal) ||
                           name.EndsWith("_count", StringComparison.Ordinal) || name.EndsWith("_sum", StringComparison.Ordinal);
            if (counter)
                Assert.True(now[series] >= then[series], $"{series} fell from {then[series]} to {now[series]}");
        }
    }

    [Fact]
    public void Without_a_metrics_address_nothing_is_served()
    {
        int[] p = Ports();
        var config = Config(p, metrics: false);
        Assert.All(config.Nodes, n => Assert.Null(n.Metrics));
        using var witness = new WitnessNode(config, 3, _ => { });
        Assert.NotNull(witness.Start(() => true));   // stopped at once: no majority, but no endpoint either
        Assert.Null(witness.MetricsEndpoint);
    }

    [Fact]
    public void A_metrics_address_in_use_stops_the_witness_naming_the_field()
    {
        int[] p = Ports();
        var config = Config(p);
        using var squatter = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        squatter.Bind(config.Node(3).Metrics!);
        squatter.Listen(1);
        using var witness = new WitnessNode(config, 3, _ => { });
        string? problem = witness.Start(() => false);
        Assert.NotNull(problem);
        Assert.StartsWith($"cannot serve metrics on 127.0.0.1:{p[7]} (nodes[2].metrics): ", problem);
        Assert.Null(witness.Driver);   // it went no further
    }
}
