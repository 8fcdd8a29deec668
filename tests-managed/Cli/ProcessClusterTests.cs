using System.Diagnostics;
using System.Text.Json;
using Plover.Tests.Transport;
using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Cli;

/// <summary>
/// Three real <c>plover</c> processes on loopback TCP: a primary and a backup (bench-node) and a witness. The
/// primary commits 100,000 inputs; then it is killed with SIGKILL, and the backup must take over with every
/// committed entry (same digests at the same indices, every input of the old primary in order) and commit new ones.
/// </summary>
public sealed class ProcessClusterTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("plover-proc-").FullName;
    private readonly List<PloverProcess> _processes = new();

    public void Dispose()
    {
        foreach (var p in _processes) p.Dispose();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private string WriteCluster()
    {
        var ports = TransportTestKit.FreePorts(3);
        TestKeys.WriteKeyFiles(_dir, [1, 2, 3]);
        var path = Path.Combine(_dir, "cluster.json");
        // Election timeouts well above the defaults (10-30 ms): the test host is small and shared, and this
        // test is about what survives a failover, not about how fast it is (the benchmark measures that).
        File.WriteAllText(path, $$"""
            {
              "cluster": "proc-test",
              "keyFile": "observer.key",
              {{TestKeys.ObserversJson}},
              "nodes": [
                {"id": 1, "role": "primary", "address": "127.0.0.1:{{ports[0]}}", {{TestKeys.NodeJson(1)}}},
                {"id": 2, "role": "backup",  "address": "127.0.0.1:{{ports[1]}}", {{TestKeys.NodeJson(2)}}},
                {"id": 3, "role": "witness", "address": "127.0.0.1:{{ports[2]}}", {{TestKeys.NodeJson(3)}}}
              ],
              "timeouts": {"heartbeatMs": 1, "electionMinMs": 100, "electionMaxMs": 300}
            }
            """);
        return path;
    }

    private PloverProcess Start(string name, params string[] args)
    {
        var p = new PloverProcess(name, args);
        _processes.Add(p);
        return p;
    }

    private string Transcripts() => string.Join("\n", _processes.Select(p => p.Transcript()));

    private static Dictionary<long, string> Checkpoints(PloverProcess p) =>
        p.Out.Where(l => l.StartsWith("CHECKPOINT", StringComparison.Ordinal))
             .ToDictionary(l => long.Parse(PloverProcess.Field(l, "index")!), l => PloverProcess.Field(l, "digest")!);

    private static long Count(string? status, int proposer)
    {
        var from = PloverProcess.Field(status, "from");
        if (from is null || from == "-") return 0;
        foreach (var part in from.Split(','))
        {
            var kv = part.Split(':');
            if (kv[0] == proposer.ToString()) return long.Parse(kv[1]);
        }
        return 0;
    }

    [Fact]
    public void HundredThousandInputsSurviveKillingThePrimary()
    {
        var config = WriteCluster();
        var sw = Stopwatch.StartNew();
        var witness = Start("witness", "witness", "--config", config, "--node", "3");
        // Workloads are numbered by their place in the list, the same on every node; only the backup has a second
        // one, which it runs once it leads.
        var backup = Start("backup", "bench-node", "--config", config, "--node", "2", "--report-ms", "50",
                           "--workload", "main:consensus:64:16:32:100000", "--workload", "after:consensus:64:4:8:1000");
        var primary = Start("primary", "bench-node", "--config", config, "--node", "1", "--report-ms", "50",
                            "--workload", "main:consensus:64:16:32:100000");

        var result = primary.WaitLine("RESULT", timeoutMs: 120_000);
        Assert.True(result is not null, "the primary did not finish its workload\n" + Transcripts());
        using (var doc = JsonDocument.Parse(result!["RESULT ".Length..]))
        {
            Assert.False(doc.RootElement.TryGetProperty("error", out var err), $"workload failed: {err}\n{Transcripts()}");
            Assert.Equal(100_000, doc.RootElement.GetProperty("completed").GetInt32());
            output.WriteLine($"primary: {result}");
        }

        // The backup applies exactly the primary's log: same commit index, same running digest.
        var primaryStatus = primary.WaitLine("STATUS", l => Count(l, 1) > 100_000);
        Assert.NotNull(primaryStatus);
        Thread.Sleep(200);   // let the last barrier/heartbeat settle, then take the final state
        primaryStatus = primary.Out.Last(l => l.StartsWith("STATUS", StringComparison.Ordinal));
        long committed = long.Parse(PloverProcess.Field(primaryStatus, "applied")!);
        long primaryInputs = Count(primaryStatus, 1);
        Assert.Equal("0", PloverProcess.Field(primaryStatus, "violations"));
        var backupStatus = backup.WaitLine("STATUS", l => PloverProcess.Field(l, "applied") == committed.ToString());
        Assert.True(backupStatus is not null, $"backup did not reach index {committed}\n{Transcripts()}");
        Assert.Equal(PloverProcess.Field(primaryStatus, "digest"), PloverProcess.Field(backupStatus, "digest"));
        output.WriteLine($"primary: {primaryStatus}\nbackup:  {backupStatus}\n100,000 inputs committed {sw.Elapsed.TotalSeconds:F1} s after the test started (includes building the CLI on a first run)");

        // Kill -9 the primary: the backup must become leader and commit new inputs after everything committed.
        var primaryCheckpoints = Checkpoints(primary);
        primary.Process.Kill();
        primary.Process.WaitForExit();
        var killedAt = Stopwatch.StartNew();
        var role = backup.WaitLine("ROLE", l => l.Contains("role=leader"), 10_000);
        Assert.True(role is not null, "the backup did not take over\n" + Transcripts());
        output.WriteLine($"backup leads {killedAt.ElapsedMilliseconds} ms (as seen by the test) after the kill: {role}");
        // every node prints each committed result: the backup printed the primary's "main" too
        var after = backup.WaitLine("RESULT", l => l.Contains("\"name\":\"after\""), 30_000);
        Assert.True(after is not null, "the new leader did not commit new inputs\n" + Transcripts());
        using (var doc = JsonDocument.Parse(after!["RESULT ".Length..]))
        {
            Assert.False(doc.RootElement.TryGetProperty("error", out var err), $"workload failed: {err}\n{Transcripts()}");
            Assert.Equal(1000, doc.RootElement.GetProperty("completed").GetInt32());
        }

        var final = backup.WaitLine("STATUS", l => Count(l, 2) > 1000);
        Assert.True(final is not null, Transcripts());
        Assert.Equal("0", PloverProcess.Field(final, "violations"));      // every client's inputs in order, every index once
        Assert.Equal("0", PloverProcess.Field(final, "gaps"));            // and none lost: both workloads ran without a leader change
        Assert.Equal(primaryInputs, Count(final, 1));                    // all of the old primary's committed inputs, nothing more
        Assert.True(long.Parse(PloverProcess.Field(final, "term")!) > 1);
        var backupCheckpoints = Checkpoints(backup);
        Assert.NotEmpty(primaryCheckpoints);
        foreach (var (index, digest) in primaryCheckpoints)
            Assert.Equal(digest, backupCheckpoints[index]);                // identical history up to the kill

        // Both survivors stop cleanly on SIGTERM; the witness stored everything the new leader committed before.
        long backupApplied = long.Parse(PloverProcess.Field(final, "applied")!);
        witness.Signal("TERM");
        backup.Signal("TERM");
        Assert.True(witness.Process.WaitForExit(10_000) && backup.Process.WaitForExit(10_000), Transcripts());
        Assert.Equal(0, witness.Process.ExitCode);
        Assert.Equal(0, backup.Process.ExitCode);
        witness.Process.WaitForExit();   // flush the redirected output
        var w = witness.Out.FirstOrDefault(l => l.StartsWith("WITNESS", StringComparison.Ordinal));
        Assert.True(w is not null, Transcripts());
        Assert.True(long.Parse(PloverProcess.Field(w, "last")!) >= backupApplied, $"{w} vs backup applied {backupApplied}");
        output.WriteLine($"{w}\ntotal {sw.Elapsed.TotalSeconds:F1} s");
    }
}
