using System.Globalization;
using Plover.Config;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Cli;

/// <summary>
/// <c>plover status --config FILE [--key FILE] [--json] [--timeout-ms MS]</c>: asks every node of the cluster what it
/// is doing, over its consensus port, authenticating as an observer listed in the config (its key: --key, default
/// the config's keyFile; an observer's key can read status and nothing else), and prints one line per node:
/// role, term, leader, commit index, lag behind the primary, last sync, protected or not, and what is wrong.
/// Exit code: 0 when a primary leads with a synced backup and every node can vote (protected), 1 when the cluster is
/// unprotected (no primary, the primary runs alone, a node is unreachable, recovering or not synced), 2 on usage or
/// config errors.
/// </summary>
internal static class StatusCommand
{
    public static int Run(ReadOnlySpan<string> args)
    {
        var cl = CommandLine.Parse("status", args, ["config", "key", "timeout-ms"], ["json"]);
        cl.NoPositionals();
        string path = cl.Required("config");
        if (!File.Exists(path)) throw new UsageException($"status: config file '{path}' does not exist");
        int timeoutMs = cl.Int("timeout-ms", 2000, 1);
        var config = ClusterConfig.Load(path);
        var (keyPath, keyField) = cl.Optional("key") is { } given ? (Path.GetFullPath(given), "--key")
            : config.KeyFile is { } k ? (k, "keyFile")
            : throw new UsageException("status: no key: give --key FILE (an observer's key) or a top-level keyFile in the config");
        var (key, observer) = config.LoadObserverKey(keyPath, keyField);
        var self = new ClusterIdentity(config.Cluster, Handshake.ObserverId, key, config.Nodes.ToDictionary(n => n.Id, n => n.PublicKey),
            Encrypt: config.Encrypt) { ObserverName = observer.Name };

        var answers = config.Nodes.AsParallel().AsOrdered().Select(n =>
        {
            try { return (Node: n, Status: ObserverLink.Query(n.Endpoint, self, n.Id, TimeSpan.FromMilliseconds(timeoutMs)), Error: (string?)null); }
            catch (Exception e) when (e is IOException or HandshakeException or System.Net.Sockets.SocketException)
            { return (Node: n, Status: (NodeStatus?)null, Error: e.Message); }
        }).ToList();

        var primary = answers.Where(a => a.Status is { Role: "primary", Fenced: false }).Select(a => a.Status!).MaxBy(s => s.Term);
        bool synced = primary is { Protected: true } &&
                      answers.Any(a => a.Node.Id == primary.BackupId && a.Status is { Role: "backup" });
        // A failover needs a majority that can vote: a node that is unreachable, or still recovering its consensus
        // state after a restart, leaves a synced pair unable to survive the loss of the primary.
        var cannotVote = answers.Where(a => a.Status is null or { ConsensusRole: "" or "recovering" })
            .Select(a => $"node {a.Node.Id} {(a.Status is null ? "is unreachable" : a.Status.ConsensusRole == "" ? "is starting" : "is recovering its consensus state")}")
            .ToList();
        bool isProtected = synced && cannotVote.Count == 0;
        string verdict = primary is null ? "UNPROTECTED: no primary"
            : isProtected ? $"protected: node {primary.NodeId} is primary in term {primary.Term}, node {primary.BackupId} its backup"
            : synced ? $"UNPROTECTED: node {primary.NodeId} is primary in term {primary.Term} with backup {primary.BackupId}, but " +
                       $"{string.Join(" and ", cannotVote)}: losing the primary now would stop the service"
            : $"UNPROTECTED: node {primary.NodeId} is primary in term {primary.Term} {(primary.Problem.Length > 0 ? $"({primary.Problem})" : "without a synced backup")}";

        if (cl.Flag("json"))
        {
            using var stdout = Console.OpenStandardOutput();
            using var j = new System.Text.Json.Utf8JsonWriter(stdout, new System.Text.Json.JsonWriterOptions { Indented = true });
            j.WriteStartObject();
            j.WriteString("cluster", config.Cluster);
            j.WriteBoolean("protected", isProtected);
            j.WriteString("verdict", verdict);
            // every byte the answering nodes sent, over all channels (each byte sent is also received by a peer)
            j.WriteNumber("bytesSent", answers.Sum(a => a.Status?.Traffic.Sum(t => t.SentBytes) ?? 0));
            j.WriteStartArray("nodes");
            foreach (var (node, s, error) in answers)
            {
                j.WriteStartObject();
                j.WriteNumber("id", node.Id);
                j.WriteString("configRole", node.Role.Name());
                j.WriteString("address", node.Address);
                if (s is null) j.WriteString("error", error);
                else
                {
                    j.WriteString("role", s.Role);
                    j.WriteNumber("term", s.Term);
                    j.WriteNumber("leaderId", s.LeaderId);
                    j.WriteNumber("commitIndex", s.CommitIndex);
                    j.WriteNumber("lag", primary is null ? 0 : Math.Max(0, primary.CommitIndex - s.CommitIndex));
                    j.WriteNumber("lastSyncEpoch", s.LastSyncEpoch);
                    j.WriteNumber("lastSyncUnixUs", s.LastSyncUnixUs);
                    j.WriteBoolean("protected", s.Protected);
                    j.WriteBoolean("fenced", s.Fenced);
                    j.WriteString("problem", s.Problem);
                    j.WriteString("consensusRole", s.ConsensusRole);
                    j.WriteString("mode", s.Mode);
                    if (s.DiskGeneration > 0)   // a replica with drives: how new its images are (see README, Disks)
                    {
                        j.WriteNumber("diskGeneration", s.DiskGeneration);
                        j.WriteBoolean("diskGenerationPrimary", s.DiskGenerationPrimary);
                    }
                    Metrics.WireTraffic.WriteJson(j, s.Traffic);
                }
                j.WriteEndObject();
            }
            j.WriteEndArray();
            j.WriteEndObject();
        }
        else
        {
            Console.WriteLine($"cluster '{config.Cluster}': {verdict}");
            Console.WriteLine($"{"node",4}  {"config",-8} {"role",-8} {"term",5} {"leader",6} {"commit",8} {"lag",6} {"last sync",-22} {"protected",-9}  {"mode",-19}  problem");
            long nowUs = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks / 10;
            foreach (var (node, s, error) in answers)
            {
                if (s is null)
                {
                    Console.WriteLine($"{node.Id,4}  {node.Role.Name(),-8} {"?",-8} {"",5} {"",6} {"",8} {"",6} {"",-22} {"",-9}  {"",-19}  unreachable at {node.Address}: {error}");
                    continue;
                }
                string sync = s.LastSyncUnixUs == 0 ? "-" : $"e{s.LastSyncEpoch}, {(nowUs - s.LastSyncUnixUs) / 1e6:F1} s ago";
                long lag = primary is null ? 0 : Math.Max(0, primary.CommitIndex - s.CommitIndex);
                Console.WriteLine($"{node.Id,4}  {node.Role.Name(),-8} {s.Role,-8} {s.Term,5} {s.LeaderId,6} {s.CommitIndex,8} {lag,6} {sync,-22} " +
                                  $"{(s.Role == "primary" ? (s.Protected ? "yes" : "NO") : ""),-9}  {s.Mode,-19}  {s.Problem}");
            }
        }
        return isProtected ? 0 : 1;
    }
}
