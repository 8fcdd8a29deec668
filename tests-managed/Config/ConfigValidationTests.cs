using System.Text.Json.Nodes;
using Plover.Config;
using Plover.Tests.Transport;
using Xunit;

namespace Plover.Tests.Config;

/// <summary>Every validation error: each case breaks one thing in a valid config and checks the message names
/// the field and the problem.</summary>
public sealed class ConfigValidationTests
{
    private static string Refuse(JsonObject json) => Refuse(json.ToJsonString());

    private static string Refuse(string text)
    {
        var e = Assert.Throws<ConfigException>(() => ClusterConfig.Parse(text, "/etc/plover"));
        Assert.StartsWith("config: ", e.Message);
        return e.Message;
    }

    private static JsonObject With(Action<JsonObject> change)
    {
        JsonObject json = ConfigFixture.Valid();
        change(json);
        return json;
    }

    [Theory]
    [InlineData("cluster")]
    [InlineData("keyFile")]
    public void MissingTopLevelTextIsNamed(string field)
    {
        Assert.StartsWith($"config: {field}: missing", Refuse(With(j => j.Remove(field))));
        Assert.Equal($"config: {field}: empty", Refuse(With(j => j[field] = " ")));
    }

    [Fact]
    public void KeyFileMayBeLeftOutWhenEveryNodeNamesItsOwn()
    {
        var json = With(j =>
        {
            j.Remove("keyFile");
            for (int i = 0; i < 3; i++) ConfigFixture.Node(j, i)["keyFile"] = $"n{i}.key";
        });
        Assert.Null(ClusterConfig.Parse(json.ToJsonString(), "/etc/plover").KeyFile);
        Assert.Equal("config: keyFile: missing (nodes[2] has no keyFile of its own)",
            Refuse(With(j => { j.Remove("keyFile"); ConfigFixture.Node(j, 0)["keyFile"] = "n0.key"; ConfigFixture.Node(j, 1)["keyFile"] = "n1.key"; })));
    }

    [Fact]
    public void PreviousPublicKeyIsOptionalAndChecked()
    {
        var config = ClusterConfig.Parse(With(j => ConfigFixture.Node(j, 1)["previousPublicKey"] = TestKeys.PublicKey(9)).ToJsonString(), "/x");
        Assert.Equal(TestKeys.Node(9).PublicKey, config.Node(2).PreviousPublicKey);
        Assert.Null(config.Node(1).PreviousPublicKey);
        Assert.Equal("config: nodes[1].previousPublicKey: not base64", Refuse(With(j => ConfigFixture.Node(j, 1)["previousPublicKey"] = "?")));
    }

    [Fact]
    public void MissingPublicKeyIsNamed() =>
        Assert.Equal("config: nodes[1].publicKey: missing", Refuse(With(j => ConfigFixture.Node(j, 1).Remove("publicKey"))));

    [Fact]
    public void PublicKeyThatIsNotBase64IsNamed() =>
        Assert.Equal("config: nodes[0].publicKey: not base64", Refuse(With(j => ConfigFixture.Node(j, 0)["publicKey"] = "not a key!")));

    [Fact]
    public void PublicKeyOfTheWrongSizeIsNamed() =>
        Assert.StartsWith("config: nodes[2].publicKey: 32 bytes, expected 64",
            Refuse(With(j => ConfigFixture.Node(j, 2)["publicKey"] = Convert.ToBase64String(new byte[32]))));

    [Fact]
    public void PublicKeyOffTheCurveIsNamed() =>
        Assert.Equal("config: nodes[2].publicKey: not a point on the P-256 curve",
            Refuse(With(j => ConfigFixture.Node(j, 2)["publicKey"] = Convert.ToBase64String(Enumerable.Repeat((byte)7, 64).ToArray()))));

    [Fact]
    public void TwoNodesWithOneKeyAreRefused() =>
        Assert.StartsWith("config: nodes[1].publicKey: is also the public key of nodes[0]",
            Refuse(With(j => ConfigFixture.Node(j, 1)["publicKey"] = ConfigFixture.Node(j, 0)["publicKey"]!.GetValue<string>())));

    [Fact]
    public void ObserverWithANodesKeyIsRefused() =>
        Assert.StartsWith("config: observers[0].publicKey: is the public key of nodes[2]",
            Refuse(With(j => j["observers"]![0]!["publicKey"] = ConfigFixture.Node(j, 2)["publicKey"]!.GetValue<string>())));

    [Fact]
    public void ObserverFieldsAreNamed()
    {
        Assert.Equal("config: observers[0].name: missing", Refuse(With(j => j["observers"]![0]!.AsObject().Remove("name"))));
        Assert.Equal("config: observers[0].publicKey: missing", Refuse(With(j => j["observers"]![0]!.AsObject().Remove("publicKey"))));
        Assert.Equal("config: observers[1].name: duplicate name 'ops' (observers[0] has it too)",
            Refuse(With(j => j["observers"]!.AsArray().Add(JsonNode.Parse(j["observers"]![0]!.ToJsonString())))));
    }

    [Fact]
    public void EncryptMustBeABoolean() =>
        Assert.StartsWith("config: $.encrypt: wrong type", Refuse(With(j => j["encrypt"] = "yes")));

    [Fact]
    public void MissingNodes() =>
        Assert.StartsWith("config: nodes: missing", Refuse(With(j => j.Remove("nodes"))));

    [Fact]
    public void NullNode() =>
        Assert.Equal("config: nodes[1]: null, expected a node object",
            Refuse(With(j => j["nodes"]!.AsArray()[1] = null)));

    [Fact]
    public void UnknownRole()
    {
        string message = Refuse(With(j => ConfigFixture.Node(j, 2)["role"] = "observer"));
        Assert.Equal("config: nodes[2].role: unknown role 'observer' (expected primary, backup or witness)", message);
    }

    [Fact]
    public void RolesAreCaseSensitive() =>
        Assert.Contains("unknown role 'Primary'", Refuse(With(j => ConfigFixture.Node(j, 0)["role"] = "Primary")));

    [Fact]
    public void MissingRole() =>
        Assert.Equal("config: nodes[0].role: missing", Refuse(With(j => ConfigFixture.Node(j, 0).Remove("role"))));

    [Fact]
    public void DuplicateId()
    {
        string message = Refuse(With(j => ConfigFixture.Node(j, 2)["id"] = 1));
        Assert.Equal("config: nodes[2].id: duplicate id 1 (nodes[0] has it too)", message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-4)]
    public void NonPositiveId(int id) =>
        Assert.Equal($"config: nodes[1].id: must be a positive integer (got {id})",
            Refuse(With(j => ConfigFixture.Node(j, 1)["id"] = id)));

    [Fact]
    public void MissingId() =>
        Assert.Equal("config: nodes[0].id: missing", Refuse(With(j => ConfigFixture.Node(j, 0).Remove("id"))));

    [Theory]
    [InlineData("primary")]
    [InlineData("backup")]
    [InlineData("witness")]
    public void MissingRoleHolder(string role)
    {
        string message = Refuse(With(j =>
        {
            var nodes = j["nodes"]!.AsArray();
            var holder = nodes.First(n => (string?)n!["role"] == role)!;
            nodes.Remove(holder);
        }));
        Assert.StartsWith($"config: nodes: no {role} ", message);
    }

    [Fact]
    public void TwoPrimaries()
    {
        string message = Refuse(With(j => ConfigFixture.Node(j, 1)["role"] = "primary"));
        Assert.StartsWith("config: nodes: 2 nodes are primary (ids 1, 2)", message);
    }

    [Fact]
    public void FourthNodeIsADuplicateRole()
    {
        string message = Refuse(With(j => j["nodes"]!.AsArray().Add(
            new JsonObject { ["id"] = 4, ["role"] = "witness", ["address"] = "127.0.0.1:7404", ["publicKey"] = TestKeys.PublicKey(4) })));
        Assert.StartsWith("config: nodes: 2 nodes are witness (ids 3, 4)", message);
    }

    [Theory]
    [InlineData("127.0.0.1", "'127.0.0.1' is not host:port")]
    [InlineData("127.0.0.1:", "'127.0.0.1:' is not host:port")]
    [InlineData(":7401", "':7401' is not host:port")]
    [InlineData("127.0.0.1:http", "port 'http' in '127.0.0.1:http' is not a number")]
    [InlineData("127.0.0.1:-1", "port '-1' in '127.0.0.1:-1' is not a number")]
    [InlineData("127.0.0.1:0", "port 0 in '127.0.0.1:0' is out of range 1..65535")]
    [InlineData("127.0.0.1:65536", "port 65536 in '127.0.0.1:65536' is out of range 1..65535")]
    [InlineData("example.com:80", "host 'example.com' in 'example.com:80' is not an IPv4 address")]
    [InlineData("127.1:80", "host '127.1' in '127.1:80' is not an IPv4 address")]
    [InlineData("300.1.1.1:80", "host '300.1.1.1' in '300.1.1.1:80' is not an IPv4 address")]
    [InlineData("::1:80", "an IPv6 address must be written [addr]:port")]
    [InlineData("[1.2.3.4]:80", "'[1.2.3.4]' in '[1.2.3.4]:80' is not an IPv6 address")]
    public void BadAddress(string address, string problem)
    {
        string message = Refuse(With(j => ConfigFixture.Node(j, 1)["address"] = address));
        Assert.StartsWith("config: nodes[1].address: ", message);
        Assert.Contains(problem, message);
    }

    [Fact]
    public void SharedAddress() =>
        Assert.Equal("config: nodes[2].address: 127.0.0.1:7401 is also the address of node 1",
            Refuse(With(j => ConfigFixture.Node(j, 2)["address"] = "127.0.0.1:7401")));

    [Fact]
    public void AdminPathTooLongForAUnixSocket()
    {
        string path = "/tmp/" + new string('a', 120) + ".sock";
        string message = Refuse(With(j => ConfigFixture.Node(j, 0)["admin"] = path));
        Assert.StartsWith("config: nodes[0].admin: socket path", message);
        Assert.Contains("at most 107", message);
    }

    [Fact]
    public void SharedAdminSocket() =>
        Assert.Equal("config: nodes[1].admin: '/tmp/plover-n1.sock' is also the admin socket of node 1",
            Refuse(With(j => ConfigFixture.Node(j, 1)["admin"] = "/tmp/plover-n1.sock")));

    [Fact]
    public void EmptyAdmin() =>
        Assert.Equal("config: nodes[0].admin: empty", Refuse(With(j => ConfigFixture.Node(j, 0)["admin"] = "")));

    [Fact]
    public void MetricsIsOffUnlessConfigured()
    {
        var config = ClusterConfig.Parse(ConfigFixture.ValidJson, "/x");
        Assert.All(config.Nodes, n => Assert.Null(n.Metrics));
        var json = With(j => { ConfigFixture.Node(j, 0)["metrics"] = "127.0.0.1:9400"; ConfigFixture.Node(j, 2)["metrics"] = "[::1]:9400"; });
        config = ClusterConfig.Parse(json.ToJsonString(), "/x");
        Assert.Equal(("127.0.0.1:9400", new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 9400)),
                     (config.Node(1).MetricsAddress, config.Node(1).Metrics));
        Assert.Equal(new System.Net.IPEndPoint(System.Net.IPAddress.IPv6Loopback, 9400), config.Node(3).Metrics);
        Assert.Null(config.Node(2).Metrics);
    }

    [Theory]
    [InlineData("127.0.0.1", "'127.0.0.1' is not host:port")]
    [InlineData("127.0.0.1:0", "port 0 in '127.0.0.1:0' is out of range 1..65535")]
    [InlineData("localhost:metrics", "port 'metrics' in 'localhost:metrics' is not a number")]
    [InlineData("metrics.example:9400", "host 'metrics.example' in 'metrics.example:9400' is not an IPv4 address")]
    [InlineData("::1:9400", "an IPv6 address must be written [addr]:port")]
    public void BadMetricsAddress(string address, string problem)
    {
        string message = Refuse(With(j => ConfigFixture.Node(j, 1)["metrics"] = address));
        Assert.StartsWith("config: nodes[1].metrics: ", message);
        Assert.Contains(problem, message);
    }

    [Fact]
    public void EmptyMetrics() =>
        Assert.Equal("config: nodes[2].metrics: empty", Refuse(With(j => ConfigFixture.Node(j, 2)["metrics"] = " ")));

    [Fact]
    public void MetricsMustBeAString() =>
        Assert.StartsWith("config: $.nodes[0].metrics: wrong type, expected a string",
            Refuse(With(j => ConfigFixture.Node(j, 0)["metrics"] = 9400)));

    [Theory]
    [InlineData(0, "127.0.0.1:7401", "127.0.0.1:7401 is also the consensus address of node 1 (127.0.0.1:7401)")]
    [InlineData(2, "127.0.0.1:7401", "127.0.0.1:7401 is also the consensus address of node 1 (127.0.0.1:7401)")]
    [InlineData(0, "0.0.0.0:7401", "0.0.0.0:7401 is also the consensus address of node 1 (127.0.0.1:7401)")]
    [InlineData(2, "127.0.0.1:7409", "127.0.0.1:7409 is also the consensus address of node 3 (127.0.0.1:7409)")]
    [InlineData(1, "0.0.0.0:7403", "0.0.0.0:7403 is the sync link address of node 2 (its address 127.0.0.1:7402 with the port + 1)")]
    [InlineData(0, "127.0.0.1:7403", "127.0.0.1:7403 is the sync link address of node 2 (its address 127.0.0.1:7402 with the port + 1)")]
    public void MetricsOnAClusterPort(int node, string address, string problem) =>
        // the witness moved to 7409: in the fixture it sits on node 2's sync link port
        Assert.Equal($"config: nodes[{node}].metrics: {problem}",
            Refuse(With(j => { ConfigFixture.Node(j, 2)["address"] = "127.0.0.1:7409"; ConfigFixture.Node(j, node)["metrics"] = address; })));

    [Fact]
    public void SharedMetricsAddress() =>
        Assert.Equal("config: nodes[1].metrics: 127.0.0.1:9400 is also the metrics address of node 1",
            Refuse(With(j => { ConfigFixture.Node(j, 0)["metrics"] = "127.0.0.1:9400"; ConfigFixture.Node(j, 1)["metrics"] = "127.0.0.1:9400"; })));

    [Fact]
    public void TheSameWildcardMetricsPortOnEveryHostIsAllowed()
    {
        var json = With(j => { foreach (int i in new[] { 0, 1, 2 }) ConfigFixture.Node(j, i)["metrics"] = "0.0.0.0:9400"; });
        Assert.All(ClusterConfig.Parse(json.ToJsonString(), "/x").Nodes, n => Assert.Equal(9400, n.Metrics!.Port));
        // the witness has no sync link: its address's port + 1 is free
        json = With(j => { ConfigFixture.Node(j, 2)["address"] = "127.0.0.1:7409"; ConfigFixture.Node(j, 2)["metrics"] = "127.0.0.1:7410"; });
        Assert.Equal(7410, ClusterConfig.Parse(json.ToJsonString(), "/x").Node(3).Metrics!.Port);
    }

    [Fact]
    public void HeartbeatNotBelowElectionMin()
    {
        string message = Refuse(With(j => j["timeouts"]!["heartbeatMs"] = 10));
        Assert.Equal("config: timeouts.heartbeatMs: 10 must be less than timeouts.electionMinMs 10", message);
    }

    [Fact]
    public void ElectionMinAboveMax()
    {
        string message = Refuse(With(j => j["timeouts"]!["electionMinMs"] = 31));
        Assert.Equal("config: timeouts.electionMinMs: 31 is greater than timeouts.electionMaxMs 30", message);
    }

    [Fact]
    public void ElectionMinEqualToMaxIsAllowed()
    {
        var json = With(j => j["timeouts"]!["electionMinMs"] = 30);
        Assert.Equal(30, ClusterConfig.Parse(json.ToJsonString(), "/x").Timeouts.ElectionMinMs);
    }

    [Theory]
    [InlineData("timeouts", "heartbeatMs", 0)]
    [InlineData("timeouts", "heartbeatMs", -1)]
    [InlineData("timeouts", "electionMinMs", 0)]
    [InlineData("timeouts", "electionMaxMs", -30)]
    public void NonPositiveTimeout(string section, string field, double value)
    {
        string message = Refuse(With(j => j[section]![field] = value));
        Assert.Equal($"config: {section}.{field}: must be a positive number (got {value})", message);
    }

    [Theory]
    [InlineData("idleWindowUs", 0)]
    [InlineData("idleThresholdUs", -1)]
    [InlineData("idleWindows", 0)]
    [InlineData("idleWindowsWithOutput", 0)]
    [InlineData("maxEpochMs", -200)]
    public void NonPositiveSyncValue(string field, int value) =>
        Assert.Equal($"config: sync.{field}: must be a positive integer (got {value})",
            Refuse(With(j => j["sync"]![field] = value)));

    [Fact]
    public void IdleThresholdAboveWindow() =>
        Assert.Equal("config: sync.idleThresholdUs: 101 is greater than sync.idleWindowUs 100",
            Refuse(With(j => j["sync"]!["idleThresholdUs"] = 101)));

    [Fact]
    public void IdleWindowsWithOutputAboveIdleWindows() =>
        Assert.Equal("config: sync.idleWindowsWithOutput: 4 is greater than sync.idleWindows 3",
            Refuse(With(j => j["sync"]!["idleWindowsWithOutput"] = 4)));

    [Fact]
    public void UnknownSyncMode() =>
        Assert.Equal("config: sync.mode: unknown mode 'remus' (expected replicate, the default, checkpoint or adaptive)",
            Refuse(With(j => j["sync"]!["mode"] = "remus")));

    [Fact]
    public void TheOldRemusModeSwitchIsRefused() =>
        Assert.Contains("remusMode", Refuse(With(j => j["sync"]!["remusMode"] = true)));

    [Theory]
    [InlineData(null, SyncMode.Replicate)]
    [InlineData("replicate", SyncMode.Replicate)]
    [InlineData("checkpoint", SyncMode.Checkpoint)]
    [InlineData("adaptive", SyncMode.Adaptive)]
    public void SyncModeIsRead(string? mode, SyncMode expected) =>
        Assert.Equal(expected, ClusterConfig.Parse(With(j => { if (mode is not null) j["sync"]!["mode"] = mode; }).ToJsonString(), "/x").Sync.Mode);

    [Fact]
    public void AdaptiveModeTakesDefaultThresholdsWithoutItsBlock()
    {
        var sync = ClusterConfig.Parse(With(j => j["sync"]!["mode"] = "adaptive").ToJsonString(), "/x").Sync;
        Assert.Equal(new Plover.Sync.AdaptiveOptions(), sync.Adaptive);
        Assert.Null(ClusterConfig.Parse(With(_ => { }).ToJsonString(), "/x").Sync.Adaptive);
    }

    [Fact]
    public void AdaptiveThresholdsAreRead()
    {
        var sync = ClusterConfig.Parse(With(j =>
        {
            j["sync"]!["mode"] = "adaptive";
            j["sync"]!["adaptive"] = JsonNode.Parse("{\"window\": 4, \"switchAbove\": 1.5, \"probeEvery\": 8, \"maxProbeEvery\": 32}");
        }).ToJsonString(), "/x").Sync;
        Assert.Equal(new Plover.Sync.AdaptiveOptions { Window = 4, SwitchAbove = 1.5, ProbeEvery = 8, MaxProbeEvery = 32 }, sync.Adaptive);
    }

    [Theory]
    [InlineData("replicate", "{}", "config: sync.adaptive: is read only with \"mode\": \"adaptive\" (sync.mode is replicate)")]
    [InlineData("checkpoint", "{}", "config: sync.adaptive: is read only with \"mode\": \"adaptive\" (sync.mode is checkpoint)")]
    [InlineData("adaptive", "{\"window\": 0}", "config: sync.adaptive.window: must be a positive integer (got 0)")]
    [InlineData("adaptive", "{\"window\": 5000}", "config: sync.adaptive.window: 5000 syncs is more than 1024")]
    [InlineData("adaptive", "{\"switchAbove\": 0}", "config: sync.adaptive.switchAbove: 0 is not a ratio in (0, 100] (replication bytes / checkpoint bytes above which to checkpoint; 1 by default)")]
    [InlineData("adaptive", "{\"switchAbove\": -2}", "config: sync.adaptive.switchAbove: -2 is not a ratio in (0, 100] (replication bytes / checkpoint bytes above which to checkpoint; 1 by default)")]
    [InlineData("adaptive", "{\"probeEvery\": -1}", "config: sync.adaptive.probeEvery: must be a positive integer (got -1)")]
    [InlineData("adaptive", "{\"probeEvery\": 100, \"maxProbeEvery\": 50}", "config: sync.adaptive.maxProbeEvery: 50 is less than sync.adaptive.probeEvery 100")]
    public void BadAdaptiveBlockIsRefused(string mode, string block, string expected) =>
        Assert.Equal(expected, Refuse(With(j =>
        {
            j["sync"]!["mode"] = mode;
            j["sync"]!["adaptive"] = JsonNode.Parse(block);
        })));

    [Fact]
    public void UnknownAdaptiveFieldIsRefused() =>
        Assert.Contains("ratio", Refuse(With(j =>
        {
            j["sync"]!["mode"] = "adaptive";
            j["sync"]!["adaptive"] = JsonNode.Parse("{\"ratio\": 2}");
        })));

    [Fact]
    public void UnknownResumePoint() =>
        Assert.Equal("config: sync.resumePoint: unknown point 'hash' (expected auto, the default, bitmaps or compare)",
            Refuse(With(j => j["sync"]!["resumePoint"] = "hash")));

    [Theory]
    [InlineData(null, Plover.Sync.ResumePoint.Auto)]
    [InlineData("auto", Plover.Sync.ResumePoint.Auto)]
    [InlineData("compare", Plover.Sync.ResumePoint.Compare)]
    [InlineData("bitmaps", Plover.Sync.ResumePoint.Bitmaps)]
    public void ResumePointIsRead(string? point, Plover.Sync.ResumePoint expected) =>
        Assert.Equal(expected, ClusterConfig.Parse(With(j => { if (point is not null) j["sync"]!["resumePoint"] = point; }).ToJsonString(), "/x").Sync.ResumePoint);

    [Theory]
    [InlineData(null, 64)]
    [InlineData(1, 1)]
    [InlineData(1024, 1024)]
    public void DiskChunkIsRead(int? mib, int expected) =>
        Assert.Equal(expected, ClusterConfig.Parse(With(j => { if (mib is not null) j["sync"]!["diskChunkMiB"] = mib; }).ToJsonString(), "/x").Sync.DiskChunkMiB);

    [Theory]
    [InlineData(0)]
    [InlineData(1025)]
    public void DiskChunkOutOfRange(int mib) =>
        Assert.Contains("sync.diskChunkMiB", Refuse(With(j => j["sync"]!["diskChunkMiB"] = mib)));

    [Theory]
    [InlineData(null, null, Plover.Sync.SyncOptions.DefaultSubBlockBytes, Plover.Sync.SyncOptions.DefaultSubBlockHashBytes)]
    [InlineData(0, 1, 0, 1)]
    [InlineData(64, 2, 64, 2)]
    [InlineData(1024, 8, 1024, 8)]
    public void SubBlocksAreRead(int? bytes, int? hashBytes, int expectedBytes, int expectedHashBytes)
    {
        var sync = ClusterConfig.Parse(With(j =>
        {
            if (bytes is not null) j["sync"]!["subBlockBytes"] = bytes;
            if (hashBytes is not null) j["sync"]!["subBlockHashBytes"] = hashBytes;
        }).ToJsonString(), "/x").Sync;
        Assert.Equal(expectedBytes, sync.SubBlockBytes);
        Assert.Equal(expectedHashBytes, sync.SubBlockHashBytes);
    }

    [Theory]
    [InlineData("subBlockBytes", 32)]
    [InlineData("subBlockBytes", 100)]
    [InlineData("subBlockBytes", 2048)]
    [InlineData("subBlockHashBytes", 0)]
    [InlineData("subBlockHashBytes", 3)]
    [InlineData("subBlockHashBytes", 16)]
    public void SubBlocksOutOfRange(string key, int value) =>
        Assert.Contains($"sync.{key}", Refuse(With(j => j["sync"]![key] = value)));

    [Theory]
    [InlineData(-1)]
    [InlineData(1025)]
    public void HashingThreadsOutOfRange(int threads) =>
        Assert.Equal($"config: hashing.threads: must be 0 (all cores) to 1024 (got {threads})",
            Refuse(With(j => j["hashing"]!["threads"] = threads)));

    [Fact]
    public void UnknownTopLevelProperty()
    {
        string message = Refuse(With(j => j["clusterName"] = "x"));
        Assert.StartsWith("config: $.clusterName: unknown property 'clusterName' (line 1, position ", message);
    }

    [Fact]
    public void UnknownNodeProperty()
    {
        string message = Refuse(With(j => ConfigFixture.Node(j, 1)["rol"] = "backup"));
        Assert.StartsWith("config: $.nodes[1].rol: unknown property 'rol'", message);
    }

    [Fact]
    public void UnknownNestedProperty() =>
        Assert.StartsWith("config: $.timeouts.heartbeat: unknown property 'heartbeat'",
            Refuse(With(j => j["timeouts"]!["heartbeat"] = 1)));

    [Fact]
    public void PropertyNamesAreCaseSensitive() =>
        Assert.Contains("unknown property 'Cluster'", Refuse(With(j => j["Cluster"] = "x")));

    [Fact]
    public void WrongTypeIsNamed()
    {
        Assert.StartsWith("config: $.nodes[0].id: wrong type, expected an integer",
            Refuse(With(j => ConfigFixture.Node(j, 0)["id"] = "1")));
        Assert.StartsWith("config: $.nodes[0].id: wrong type, expected an integer",
            Refuse(With(j => ConfigFixture.Node(j, 0)["id"] = 1.5)));
        Assert.StartsWith("config: $.cluster: wrong type, expected a string", Refuse(With(j => j["cluster"] = 5)));
        Assert.StartsWith("config: $.nodes: wrong type, expected an array", Refuse(With(j => j["nodes"] = "n")));
        Assert.StartsWith("config: $.timeouts: wrong type, expected an object", Refuse(With(j => j["timeouts"] = 3)));
    }

    [Fact]
    public void MalformedJsonGivesLineAndPosition()
    {
        string text = "{\n  \"cluster\": \"demo\",\n  \"keyFile\" \"k\"\n}";
        string message = Refuse(text);
        Assert.StartsWith("config: malformed JSON at line 3, position 13", message);
    }

    [Fact]
    public void TruncatedJson() => Assert.Contains("malformed JSON at line 1", Refuse("{\"cluster\": \"demo\""));

    [Fact]
    public void EmptyDocument() => Assert.Contains("malformed JSON", Refuse(""));

    [Fact]
    public void NullDocument() => Assert.Equal("config: the document is null, not a config object", Refuse("null"));

    [Fact]
    public void TrailingCommaIsMalformed() => Assert.Contains("malformed JSON", Refuse("{\"cluster\": \"d\",}"));
}
