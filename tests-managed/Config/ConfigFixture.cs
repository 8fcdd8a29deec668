using System.Text.Json.Nodes;
using Plover.Tests.Transport;

namespace Plover.Tests.Config;

/// <summary>A valid cluster config as a mutable JSON tree, and a temporary folder for files.</summary>
internal sealed class ConfigFixture : IDisposable
{
    public static readonly string ValidJson = $$"""
        {
          "cluster": "demo",
          "keyFile": "cluster.key",
          "nodes": [
            {"id": 1, "role": "primary", "address": "127.0.0.1:7401", "admin": "/tmp/plover-n1.sock", "publicKey": "{{TestKeys.PublicKey(1)}}"},
            {"id": 2, "role": "backup",  "address": "127.0.0.1:7402", "publicKey": "{{TestKeys.PublicKey(2)}}"},
            {"id": 3, "role": "witness", "address": "127.0.0.1:7403", "publicKey": "{{TestKeys.PublicKey(3)}}"}
          ],
          "observers": [{"name": "ops", "publicKey": "{{TestKeys.Observer.PublicKeyText}}"}],
          "timeouts": {"heartbeatMs": 1, "electionMinMs": 10, "electionMaxMs": 30},
          "sync": {"idleWindowUs": 100, "idleThresholdUs": 25, "idleWindows": 3, "maxEpochMs": 200},
          "hashing": {"threads": 0}
        }
        """;

    public ConfigFixture()
    {
        Dir = Path.Combine(Path.GetTempPath(), "plover-config-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Dir);
    }

    public string Dir { get; }

    public static JsonObject Valid() => JsonNode.Parse(ValidJson)!.AsObject();

    public static JsonObject Node(JsonObject config, int index) => config["nodes"]![index]!.AsObject();

    public string Write(string name, string text)
    {
        string path = Path.Combine(Dir, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
        return path;
    }

    public string WriteKey(string name, int bytes)
    {
        string path = Path.Combine(Dir, name);
        File.WriteAllBytes(path, Enumerable.Range(0, bytes).Select(i => (byte)(i * 37 + 1)).ToArray());
        return path;
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}
