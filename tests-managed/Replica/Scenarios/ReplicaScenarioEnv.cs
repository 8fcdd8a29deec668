using System.Text;
using Plover.Idle;
using Plover.Node;
using Plover.Tests.Replica.Core;
using Plover.Tests.Scenarios;

namespace Plover.Tests.Replica.Scenarios;

/// <summary>
/// Interprets replica scenario commands against <see cref="ReplicaSim"/>: two real <see cref="ReplicaCore"/>s over
/// a synthetic consensus, sync engine, VMs and guards, where nothing happens unless a command says so. Each command
/// prints what the cores took in (<c>N &lt;- event</c>) and the actions they returned (indented), with what the sim
/// did about them; ticks and output notices that changed nothing are left out. A broken invariant prints as
/// <c>SAFETY VIOLATION: ...</c>. Commands are listed in README.md.
/// </summary>
internal sealed class ReplicaScenarioEnv
{
    private ReplicaSim? _sim;

    public string Handle(ScenarioCase c)
    {
        if (c.Command != "new" && _sim is null) throw new ScenarioUsageException("new must come first");
        var sim = _sim!;
        int mark = _sim?.Trace.Length ?? 0;
        var extra = new StringBuilder();
        switch (c.Command)
        {
            case "new":
                Allow(c, "idle", "backup-loss", "retry", "mode", "window", "probe", "max-probe", "stale-backup");
                if (_sim is not null) throw new ScenarioUsageException("new can only be used once");
                string mode = c.Args.FirstOrDefault(a => a.Key == "mode" && !a.IsBare)?.Values[0] ?? "replicate";
                if (mode is not ("replicate" or "checkpoint" or "adaptive")) throw new ScenarioUsageException("mode is replicate, checkpoint or adaptive");
                var adaptive = mode == "adaptive"
                    ? new Plover.Sync.AdaptiveOptions { Window = (int)Int(c, "window", 16), ProbeEvery = (int)Int(c, "probe", 64), MaxProbeEvery = (int)Int(c, "max-probe", 1024) }
                    : null;
                _sim = sim = new ReplicaSim(idleMonitor: Flag(c, "idle", true), backupLossMs: Int(c, "backup-loss", 1000), retryAfterAbortMs: Int(c, "retry", 500),
                                            checkpoint: mode == "checkpoint", adaptive: adaptive, staleBackup: Flag(c, "stale-backup", false));
                break;
            case "costs":
                Allow(c, "wire", "dirty");
                sim.SyncWireBytes = Int(c, "wire", sim.SyncWireBytes);
                sim.PrimaryDirtyPages = (ulong)Int(c, "dirty", (long)sim.PrimaryDirtyPages);
                extra.Append($"a replicated sync sends {sim.SyncWireBytes} bytes; the primary dirties {sim.PrimaryDirtyPages} pages " +
                             $"(a checkpoint: {sim.PrimaryDirtyPages * 4104} bytes)");
                break;
            case "input":
                Allow(c);
                int count = c.Args.Count > 0 ? (int)ParseInt(c.Args[0].Key) : 1;
                int taken = 0;
                for (int i = 0; i < count; i++) if (sim.Input()) taken++;
                extra.Append(taken == count ? $"{count} input(s) proposed" : $"{taken} of {count} input(s) proposed (no serving primary)");
                break;
            case "commit":
                Allow(c);
                var committed = sim.Commit();
                extra.Append(committed.Count == 0 ? "nothing to commit" : string.Join("\n", committed.Select(e => "committed " + ReplicaText.Entry(e))));
                break;
            case "deliver":
                Allow(c, "max");
                int max = (int)Int(c, "max", int.MaxValue);
                foreach (var n in Nodes(c)) sim.Deliver(n, max);
                break;
            case "tick":
                Allow(c, "ms");
                int ticks = c.Args.FirstOrDefault(a => a.IsBare) is { } t ? (int)ParseInt(t.Key) : 1;
                for (int i = 0; i < ticks; i++) sim.Tick(Int(c, "ms", 20));
                break;
            case "idle":
                Allow(c);
                var node = Node(c);
                var trigger = c.Args.Any(a => a is { IsBare: true, Key: "max-epoch" }) ? SyncTrigger.MaxEpoch : SyncTrigger.Idle;
                if (!sim.Idle(node, trigger)) extra.Append($"node {node.Id}: the idle monitor is not armed");
                break;
            case "request-sync":
                Allow(c);
                var requester = Node(c);
                sim.Step(requester, ReplicaEvent.SyncRequested());
                sim.Pump();
                break;
            case "resume-early":
                Allow(c);
                var resumer = Node(c);
                if (!sim.ResumeEarly(resumer)) extra.Append($"node {resumer.Id}: no sync of a primary to resume early");
                break;
            case "complete-sync":
                Allow(c);
                if (!sim.CompleteSync()) extra.Append("no pair of syncs that belong together");
                break;
            case "abort-sync":
                Allow(c);
                var aborter = Node(c);
                if (!sim.AbortSync(aborter)) extra.Append($"node {aborter.Id} runs no sync");
                break;
            case "cut-link": Allow(c); sim.CutLink(); sim.Pump(); break;
            case "reconnect": Allow(c); sim.Reconnect(); break;
            case "partition":
                Allow(c);
                sim.Partition(c.Args.Count == 0 || c.Args[0].Key != "off");
                break;
            case "elect":
                Allow(c);
                var candidate = Node(c);
                if (sim.CannotLead(candidate.Id) is { } why) extra.Append($"node {candidate.Id} cannot lead: {why}");
                else sim.Elect(candidate.Id);
                break;
            case "lose-quorum": Allow(c); sim.LoseQuorum(); break;
            case "crash": Allow(c); sim.Crash(Node(c)); break;
            case "restart": Allow(c); sim.Restart(Node(c)); break;
            case "state": Allow(c); break;
            default: throw new ScenarioUsageException($"unknown command '{c.Command}'");
        }
        var output = new StringBuilder(Quiet(sim.Trace.ToString(mark, sim.Trace.Length - mark)));
        if (extra.Length > 0) output.Append(extra).Append('\n');
        if (c.Command is "state" or "new") output.Append(sim.State()).Append('\n');
        return output.ToString();
    }

    /// <summary>Drops the lines of events that did nothing (ticks, output notices), so the stories stay readable.</summary>
    private static string Quiet(string trace)
    {
        var lines = trace.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var sb = new StringBuilder();
        for (int i = 0; i < lines.Length; i++)
        {
            bool idle = lines[i].Contains(" <- tick ") || lines[i].EndsWith(" <- output-held");
            bool acted = i + 1 < lines.Length && lines[i + 1].StartsWith("  ");
            if (idle && !acted) continue;
            sb.Append(lines[i]).Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>The replicas named by number (all when none is).</summary>
    private IEnumerable<ReplicaSim.Node> Nodes(ScenarioCase c)
    {
        var ids = c.Args.Where(a => a.IsBare && long.TryParse(a.Key, out _)).Select(a => (int)ParseInt(a.Key)).ToList();
        if (ids.Count == 0) return _sim!.Nodes;
        return ids.Select(id => id is 1 or 2 ? _sim![id] : throw new ScenarioUsageException($"no replica {id} (1 and 2 are the replicas)"));
    }

    private ReplicaSim.Node Node(ScenarioCase c)
    {
        if (c.Args.Count(a => a.IsBare && long.TryParse(a.Key, out _)) != 1) throw new ScenarioUsageException("name one replica (1 or 2)");
        return Nodes(c).Single();
    }

    private static void Allow(ScenarioCase c, params string[] keys)
    {
        foreach (var a in c.Args)
            if (!a.IsBare && !keys.Contains(a.Key)) throw new ScenarioUsageException($"unknown argument '{a.Key}'");
    }

    private static long Int(ScenarioCase c, string key, long fallback) =>
        c.Args.FirstOrDefault(a => a.Key == key && !a.IsBare) is { } a ? ParseInt(a.Values[0]) : fallback;

    private static bool Flag(ScenarioCase c, string key, bool fallback) =>
        c.Args.FirstOrDefault(a => a.Key == key && !a.IsBare) is { } a
            ? a.Values[0] switch { "true" => true, "false" => false, _ => throw new ScenarioUsageException($"{key} is true or false") }
            : fallback;

    private static long ParseInt(string s) =>
        long.TryParse(s, out long v) ? v : throw new ScenarioUsageException($"'{s}' is not a number");
}
