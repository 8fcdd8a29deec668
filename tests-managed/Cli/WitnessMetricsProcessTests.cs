using System.Net;
using System.Net.Sockets;
using Plover.Tests.Metrics;
using Plover.Tests.Transport;
using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Cli;

/// <summary>
/// The witness as the real <c>plover witness</c> process (the NativeAOT binary when PLOVER_CLI names it) serves its
/// Prometheus endpoint from the cluster config; two bench-node replicas commit inputs while the test scrapes it.
/// </summary>
public sealed class WitnessMetricsProcessTests(ITestOutputHelper output) : IDisposable
{
    private const int Inputs = 20_000;
    private readonly string _dir = Directory.CreateTempSubdirectory("plover-wmetrics-").FullName;
    private readonly List<PloverProcess> _processes = new();

    public void Dispose()
    {
        foreach (var p in _processes) p.Dispose();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    /// <summary>Writes the config: nodes 1-3 on ports[0..2], the witness's metrics on ports[3].</summary>
    private (string Path, int[] Ports) WriteCluster()
    {
        int[] ports;
        do ports = TransportTestKit.FreePorts(4);
        while (ports[3] == ports[0] + 1 || ports[3] == ports[1] + 1);   // a replica's sync port: the config refuses it
        TestKeys.WriteKeyFiles(_dir, [1, 2, 3]);
        var path = Path.Combine(_dir, "cluster.json");
        File.WriteAllText(path, $$"""
            {
              "cluster": "wmetrics-test",
              "keyFile": "observer.key",
              {{TestKeys.ObserversJson}},
              "nodes": [
                {"id": 1, "role": "primary", "address": "127.0.0.1:{{ports[0]}}", {{TestKeys.NodeJson(1)}}},
                {"id": 2, "role": "backup",  "address": "127.0.0.1:{{ports[1]}}", {{TestKeys.NodeJson(2)}}},
                {"id": 3, "role": "witness", "address": "127.0.0.1:{{ports[2]}}", {{TestKeys.NodeJson(3)}}, "metrics": "127.0.0.1:{{ports[3]}}"}
              ],
              "timeouts": {"heartbeatMs": 1, "electionMinMs": 100, "electionMaxMs": 300}
            }
            """);
        return (path, ports);
    }

    private PloverProcess Start(string name, params string[] args)
    {
        var p = new PloverProcess(name, args);
        _processes.Add(p);
        return p;
    }

    private string Transcripts() => string.Join("\n", _processes.Select(p => p.Transcript()));

    [Fact]
    public async Task The_witness_process_is_scraped_while_the_replicas_commit()
    {
        var (config, ports) = WriteCluster();
        string url = $"http://127.0.0.1:{ports[3]}/metrics";
        var witness = Start("witness", "witness", "--config", config, "--node", "3");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var samples = new List<PrometheusText>();
        var deadline = DateTime.UtcNow.AddSeconds(120);
        // The replicas start only once the endpoint answers: the NativeAOT nodes can commit the whole load within
        // a second (a run that started them together saw its first scrape at 41,456 of 50,000 inputs).
        while (samples.Count == 0 && DateTime.UtcNow < deadline)
        {
            Assert.False(witness.Process.HasExited, "the witness exited\n" + Transcripts());
            try { samples.Add(await PrometheusText.Scrape(http, url)); }
            catch (HttpRequestException) { await Task.Delay(20); }   // not listening yet
        }
        // Two clients, one input in flight each: seconds of load (4 clients with 8 each took 1.1 s, and two
        // scrapes did not always fit in it).
        Start("backup", "bench-node", "--config", config, "--node", "2", "--report-ms", "200",
              "--workload", $"main:consensus:64:2:1:{Inputs}");
        var primary = Start("primary", "bench-node", "--config", config, "--node", "1", "--report-ms", "200",
                            "--workload", $"main:consensus:64:2:1:{Inputs}");
        while (!primary.Out.Any(l => l.StartsWith("RESULT", StringComparison.Ordinal)) && DateTime.UtcNow < deadline)
        {
            Assert.False(witness.Process.HasExited, "the witness exited\n" + Transcripts());
            samples.Add(await PrometheusText.Scrape(http, url));
            await Task.Delay(5);
        }
        Assert.True(primary.Out.Any(l => l.StartsWith("RESULT", StringComparison.Ordinal)), "the workload did not finish\n" + Transcripts());

        // during the load: the witness's counters moved from one scrape to another (no scrape counted them all at once)
        var during = samples.Where(s => s.Get("plover_committed_inputs_total", 0) is > 0 and < Inputs).ToList();
        Assert.True(during.Count >= 2, $"{during.Count} scrapes saw the load under way; inputs seen: " +
                                       string.Join(", ", samples.Select(s => s.Get("plover_committed_inputs_total", -1))) + "\n" + Transcripts());
        Assert.True(during[^1]["plover_committed_inputs_total"] > during[0]["plover_committed_inputs_total"]);
        string entries = "plover_wire_received_bytes_total{channel=\"consensus\",kind=\"entries\"}";
        string acks = "plover_wire_sent_bytes_total{channel=\"consensus\",kind=\"acks\"}";
        // a series appears with its first byte: under load the first scrape of the run can come before the witness's first ack
        Assert.True(during[^1].Get(entries, 0) > during[0].Get(entries, 0));
        Assert.True(during[^1].Get(acks, 0) > during[0].Get(acks, 0));
        // a leader (a replica) is known in nearly every scrape: a host loaded by the rest of the suite can stall a
        // process past the election timeout, and a scrape inside the election that follows sees none (0; seen in
        // 2 of 3 full-suite runs, never alone)
        string leaders = string.Join(", ", during.Select(s => s["plover_leader_id"]));
        Assert.True(during.Count(s => s["plover_leader_id"] is 1 or 2) * 10 >= during.Count * 9, $"leader per scrape: {leaders}");
        foreach (var s in during)
        {
            Assert.Equal(1, s["plover_role{role=\"witness\"}"]);
            Assert.Equal(1, s["plover_consensus_role{role=\"follower\"}"]);
            Assert.True(s["plover_leader_id"] is 0 or 1 or 2, $"leader per scrape: {leaders}");
            Assert.True(s["plover_term"] >= 1);
            Assert.Equal(1, s["plover_node_info{cluster=\"wmetrics-test\",node=\"3\",config_role=\"witness\"}"]);
        }

        // after it: every input the primary committed is counted, as the witness itself reports when it stops
        PrometheusText final = null!;
        Assert.True(TransportTestKit.WaitUntil(() =>
        {
            final = PrometheusText.Scrape(http, url).GetAwaiter().GetResult();
            return final["plover_committed_inputs_total"] >= Inputs;
        }, 10_000), "the witness did not count every input\n" + Transcripts());
        witness.Signal("TERM");
        Assert.True(witness.Process.WaitForExit(10_000), Transcripts());
        Assert.Equal(0, witness.Process.ExitCode);
        witness.Process.WaitForExit();
        var line = witness.Out.FirstOrDefault(l => l.StartsWith("WITNESS", StringComparison.Ordinal));
        Assert.True(line is not null, Transcripts());
        Assert.True(long.Parse(PloverProcess.Field(line, "inputs")!) >= final["plover_committed_inputs_total"], $"{line}\n{final.Text}");
        output.WriteLine($"{samples.Count} scrapes, {during.Count} during the load; {line}");
        output.WriteLine(string.Join("\n", final.Text.Split('\n').Where(l => l.StartsWith("plover_", StringComparison.Ordinal))));
    }

    [Fact]
    public void A_witness_whose_metrics_address_is_taken_exits_naming_the_field()
    {
        var (config, ports) = WriteCluster();
        using var squatter = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        squatter.Bind(new IPEndPoint(IPAddress.Loopback, ports[3]));
        squatter.Listen(1);
        var (code, _, err) = PloverCli.Run("witness", "--config", config, "--node", "3");
        Assert.Equal(1, code);
        Assert.Contains($"plover: witness: cannot serve metrics on 127.0.0.1:{ports[3]} (nodes[2].metrics): ", err);
    }
}
