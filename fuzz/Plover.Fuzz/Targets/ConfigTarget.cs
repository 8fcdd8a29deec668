using System.Text;
using Plover.Config;

namespace Plover.Fuzz.Targets;

/// <summary>
/// The cluster configuration parser and validator (<see cref="ClusterConfig.Parse"/>) on any text: the input bytes
/// as UTF-8 (invalid sequences become U+FFFD, as File.ReadAllText makes them). Documented refusal: ConfigException
/// naming the field and the problem (QEMU refuses to start with that message). Property: a config that parses has
/// what the validator promises: one primary, one backup and one witness, with distinct positive ids, and a cluster name.
/// </summary>
public sealed class ConfigTarget : IFuzzTarget
{
    private static readonly string BaseDir = Path.GetTempPath();

    public string Name => "config";
    public string Description => "cluster config JSON -> ClusterConfig.Parse (parser + validation)";

    public string LastOutcome { get; private set; } = "";

    public void Run(ReadOnlySpan<byte> input)
    {
        ClusterConfig config;
        try
        {
            config = ClusterConfig.Parse(Encoding.UTF8.GetString(input), BaseDir);
        }
        catch (ConfigException e)
        {
            LastOutcome = "refused: " + e.Message;
            return;
        }
        LastOutcome = "accepted";
        if (string.IsNullOrEmpty(config.Cluster)) throw new FuzzFinding("a config without a cluster name was accepted");
        var ids = config.Nodes.Select(n => n.Id).ToList();
        if (ids.Distinct().Count() != ids.Count || ids.Any(id => id <= 0))
            throw new FuzzFinding($"a config with node ids {string.Join(",", ids)} was accepted");
        foreach (NodeRole role in Enum.GetValues<NodeRole>())
            if (config.Nodes.Count(n => n.Role == role) != 1) throw new FuzzFinding($"a config without exactly one {role.Name()} was accepted");
    }

    public IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        const string Full = """
        {
          // the demo cluster
          "cluster": "demo",
          "keyFile": "cluster.key",
          "mode": "replicate",
          "nodes": [
            { "id": 1, "role": "primary", "address": "127.0.0.1:7001", "admin": "/tmp/plover-1.sock", "metrics": "127.0.0.1:9101",
              "publicKey": "em/kgErQKrsQyjeNDpNM15xS5SSZs6enL1jGqNM0V7ulOzlS7C6xsiTrK68Hp43dYQGmPVaJSO/GUTiOka7uwA==" },
            { "id": 2, "role": "backup", "address": "localhost:7011", "admin": "/tmp/plover-2.sock", "publicKey": "nU98E1UhqOHtpCkxiJQCwZ8YN/V7ktJznBHQ7ET45KLzDCwO5f41rrGjSDpNjmWuWZtZmdOuitUbQUCWGGNE/A==" },
            { "id": 3, "role": "witness", "address": "[::1]:7021", "publicKey": "wotwX3LS+gBImM+KZwmo75ArThr0sJW5kHUaAStfZj8yayo9z4EUOsmg0qgG4nX3u+qJrjUkZm+y0BHhSw10Yg==" }
          ],
          "timeouts": { "heartbeatMs": 2, "electionMinMs": 10, "electionMaxMs": 20, "startupMs": 3000 },
          "sync": { "idleWindowUs": 500, "idleThresholdUs": 100, "idleWindows": 2, "maxEpochMs": 100, "timeoutMs": 5000,
                    "mode": "replicate", "earlyResume": true },
          "hashing": { "threads": 2 }
        }
        """;
        const string Minimal = """
        {"cluster":"c","keyFile":"/k","nodes":[{"id":1,"role":"primary","address":"10.0.0.1:1","publicKey":"em/kgErQKrsQyjeNDpNM15xS5SSZs6enL1jGqNM0V7ulOzlS7C6xsiTrK68Hp43dYQGmPVaJSO/GUTiOka7uwA=="},{"id":2,"role":"backup","address":"10.0.0.2:1","publicKey":"nU98E1UhqOHtpCkxiJQCwZ8YN/V7ktJznBHQ7ET45KLzDCwO5f41rrGjSDpNjmWuWZtZmdOuitUbQUCWGGNE/A=="},{"id":3,"role":"witness","address":"10.0.0.3:3","publicKey":"wotwX3LS+gBImM+KZwmo75ArThr0sJW5kHUaAStfZj8yayo9z4EUOsmg0qgG4nX3u+qJrjUkZm+y0BHhSw10Yg=="}]}
        """;
        const string Checkpoint = """
        {"cluster":"c","keyFile":"k","mode":"probe","nodes":[{"id":3,"role":"primary","address":"[fe80::1]:9","publicKey":"em/kgErQKrsQyjeNDpNM15xS5SSZs6enL1jGqNM0V7ulOzlS7C6xsiTrK68Hp43dYQGmPVaJSO/GUTiOka7uwA=="},{"id":7,"role":"backup","address":"[fe80::2]:9","publicKey":"nU98E1UhqOHtpCkxiJQCwZ8YN/V7ktJznBHQ7ET45KLzDCwO5f41rrGjSDpNjmWuWZtZmdOuitUbQUCWGGNE/A=="},{"id":9,"role":"witness","address":"[fe80::3]:9","publicKey":"wotwX3LS+gBImM+KZwmo75ArThr0sJW5kHUaAStfZj8yayo9z4EUOsmg0qgG4nX3u+qJrjUkZm+y0BHhSw10Yg=="}],"sync":{"mode":"checkpoint","earlyResume":false}}
        """;
        yield return ("full.json", Encoding.UTF8.GetBytes(Full));
        yield return ("minimal.json", Encoding.UTF8.GetBytes(Minimal));
        yield return ("checkpoint.json", Encoding.UTF8.GetBytes(Checkpoint));
    }
}
