using System.Net;
using System.Text.Json.Nodes;
using Plover.Config;
using Plover.Tests.Transport;
using Xunit;

namespace Plover.Tests.Config;

public sealed class ClusterConfigTests : IDisposable
{
    private readonly ConfigFixture _files = new();

    public void Dispose() => _files.Dispose();

    [Fact]
    public void ParsesTheDocumentedExample()
    {
        ClusterConfig config = ClusterConfig.Parse(ConfigFixture.ValidJson, "/etc/plover");

        Assert.Equal("demo", config.Cluster);
        Assert.Equal("/etc/plover/cluster.key", config.KeyFile);
        Assert.Equal(3, config.Nodes.Count);
        NodeConfig primary = config.Node(1);
        Assert.Equal(NodeRole.Primary, primary.Role);
        Assert.Equal("127.0.0.1:7401", primary.Address);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 7401), primary.Endpoint);
        Assert.Equal("/tmp/plover-n1.sock", primary.Admin);
        Assert.Equal(NodeRole.Backup, config.Node(2).Role);
        Assert.Null(config.Node(2).Admin);
        Assert.Equal(NodeRole.Witness, config.Node(3).Role);
        Assert.Equal(7403, config.Node(3).Endpoint.Port);
        Assert.Equal(new TimeoutConfig(1, 10, 30), config.Timeouts);
        Assert.Equal(new SyncConfig(100, 25, 3, 200), config.Sync);
        Assert.Equal(0, config.Hashing.Threads);
        Assert.Same(primary, config.NodeWithRole(NodeRole.Primary));
    }

    [Fact]
    public void OptionalSectionsTakeDefaults()
    {
        JsonObject json = ConfigFixture.Valid();
        json.Remove("timeouts");
        json.Remove("sync");
        json.Remove("hashing");
        ClusterConfig config = ClusterConfig.Parse(json.ToJsonString(), "/x");
        Assert.Equal(TimeoutConfig.Default, config.Timeouts);
        Assert.Equal(SyncConfig.Default, config.Sync);
        Assert.Equal(HashingConfig.Default, config.Hashing);
    }

    [Fact]
    public void PartialSectionsKeepTheOtherDefaults()
    {
        JsonObject json = ConfigFixture.Valid();
        json["timeouts"] = new JsonObject { ["electionMaxMs"] = 50.5 };
        json["sync"] = new JsonObject { ["maxEpochMs"] = 7 };
        ClusterConfig config = ClusterConfig.Parse(json.ToJsonString(), "/x");
        Assert.Equal(new TimeoutConfig(1, 10, 50.5), config.Timeouts);
        Assert.Equal(SyncConfig.Default with { MaxEpochMs = 7 }, config.Sync);
    }

    [Fact]
    public void AcceptsIpv6AndLocalhostAddressesAndNodesInAnyOrder()
    {
        JsonObject json = ConfigFixture.Valid();
        ConfigFixture.Node(json, 0)["address"] = "[::1]:9000";
        ConfigFixture.Node(json, 1)["address"] = "localhost:9001";
        ConfigFixture.Node(json, 0)["id"] = 30;
        ClusterConfig config = ClusterConfig.Parse(json.ToJsonString(), "/x");
        Assert.Equal(new IPEndPoint(IPAddress.IPv6Loopback, 9000), config.Node(30).Endpoint);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 9001), config.Node(2).Endpoint);
    }

    [Fact]
    public void RelativePathsAreTakenFromTheConfigFolder()
    {
        JsonObject json = ConfigFixture.Valid();
        ConfigFixture.Node(json, 0)["admin"] = "run/n1.sock";
        string path = _files.Write("etc/cluster.json", json.ToJsonString());
        ClusterConfig config = ClusterConfig.Load(path);
        Assert.Equal(Path.Combine(_files.Dir, "etc", "cluster.key"), config.KeyFile);
        Assert.Equal(Path.Combine(_files.Dir, "etc", "run", "n1.sock"), config.Node(1).Admin);
    }

    [Fact]
    public void LoadIdentityKeyReadsTheNodesKeyPair()
    {
        TestKeys.WriteKeyFile(Path.Combine(_files.Dir, "cluster.key"), TestKeys.Node(2));
        ClusterConfig config = ClusterConfig.Load(_files.Write("c.json", ConfigFixture.ValidJson));
        Assert.Equal(TestKeys.Node(2).PublicKey, config.LoadIdentityKey(2).PublicKey);
    }

    [Fact]
    public void ANodesOwnKeyFileOverridesTheTopLevelOne()
    {
        JsonObject json = ConfigFixture.Valid();
        ConfigFixture.Node(json, 0)["keyFile"] = "n1.key";
        TestKeys.WriteKeyFile(Path.Combine(_files.Dir, "n1.key"), TestKeys.Node(1));
        ClusterConfig config = ClusterConfig.Load(_files.Write("c.json", json.ToJsonString()));
        Assert.Equal(Path.Combine(_files.Dir, "n1.key"), config.KeyFileOf(1).Path);
        Assert.Equal(TestKeys.Node(1).PublicKey, config.LoadIdentityKey(1).PublicKey);
    }

    [Fact]
    public void KeyOfAnotherNodeIsRefusedNamingTheFileAndField()
    {
        string key = TestKeys.WriteKeyFile(Path.Combine(_files.Dir, "cluster.key"), TestKeys.Node(1));
        ClusterConfig config = ClusterConfig.Load(_files.Write("c.json", ConfigFixture.ValidJson));
        var e = Assert.Throws<ConfigException>(() => config.LoadIdentityKey(2));
        Assert.StartsWith("keyFile: ", e.Message);
        Assert.Contains(key, e.Message);
        Assert.Contains("is not node 2's key", e.Message);
        Assert.Contains("nodes[1].publicKey", e.Message);
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void KeyFileReadableByOthersIsRefusedNamingTheFile()
    {
        string key = TestKeys.WriteKeyFile(Path.Combine(_files.Dir, "cluster.key"), TestKeys.Node(2));
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        ClusterConfig config = ClusterConfig.Load(_files.Write("c.json", ConfigFixture.ValidJson));
        var e = Assert.Throws<ConfigException>(() => config.LoadIdentityKey(2));
        Assert.StartsWith("keyFile: ", e.Message);
        Assert.Contains($"'{key}' is accessible by group or others (mode 0644)", e.Message);
    }

    [Theory]
    [InlineData(32)]    // an old shared cluster key
    [InlineData(95)]
    [InlineData(97)]
    public void KeyFileOfTheWrongSizeIsRefusedNamingTheFile(int bytes)
    {
        string key = _files.WriteKey("cluster.key", bytes);
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        ClusterConfig config = ClusterConfig.Load(_files.Write("c.json", ConfigFixture.ValidJson));
        var e = Assert.Throws<ConfigException>(() => config.LoadIdentityKey(2));
        Assert.Contains($"keyFile: '{key}' holds {bytes} bytes", e.Message);
        Assert.Contains("holds 96", e.Message);
    }

    [Fact]
    public void KeyFileThatIsNotAKeyPairIsRefused()
    {
        string key = _files.WriteKey("cluster.key", 96);
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        ClusterConfig config = ClusterConfig.Load(_files.Write("c.json", ConfigFixture.ValidJson));
        var e = Assert.Throws<ConfigException>(() => config.LoadIdentityKey(2));
        Assert.Contains($"keyFile: '{key}' is not a P-256 key pair", e.Message);
    }

    [Fact]
    public void MissingKeyFileIsRefused()
    {
        ClusterConfig config = ClusterConfig.Load(_files.Write("c.json", ConfigFixture.ValidJson));
        var e = Assert.Throws<ConfigException>(() => config.LoadIdentityKey(1));
        Assert.Contains("keyFile", e.Message);
        Assert.Contains(Path.Combine(_files.Dir, "cluster.key"), e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void UnreadableKeyFileIsRefused()
    {
        Directory.CreateDirectory(Path.Combine(_files.Dir, "cluster.key")); // a folder cannot be read as a key
        ClusterConfig config = ClusterConfig.Load(_files.Write("c.json", ConfigFixture.ValidJson));
        var e = Assert.Throws<ConfigException>(() => config.LoadIdentityKey(1));
        Assert.Contains("keyFile: ", e.Message);
    }

    [Fact]
    public void ObserverKeyIsFoundByItsPublicKey()
    {
        string key = TestKeys.WriteKeyFile(Path.Combine(_files.Dir, "observer.key"), TestKeys.Observer);
        ClusterConfig config = ClusterConfig.Load(_files.Write("c.json", ConfigFixture.ValidJson));
        Assert.Equal("ops", config.LoadObserverKey(key, "--key").Observer.Name);
    }

    [Fact]
    public void ANodeKeyIsNoObserverKey()
    {
        string key = TestKeys.WriteKeyFile(Path.Combine(_files.Dir, "n1.key"), TestKeys.Node(1));
        ClusterConfig config = ClusterConfig.Load(_files.Write("c.json", ConfigFixture.ValidJson));
        var e = Assert.Throws<ConfigException>(() => config.LoadObserverKey(key, "--key"));
        Assert.Contains("--key: the key in", e.Message);
        Assert.Contains("is not an observer's in the config (observers: ops)", e.Message);
    }

    [Fact]
    public void EncryptionIsOnByDefaultAndCanBeTurnedOff()
    {
        Assert.True(ClusterConfig.Parse(ConfigFixture.ValidJson, "/x").Encrypt);
        JsonObject json = ConfigFixture.Valid();
        json["encrypt"] = false;
        Assert.False(ClusterConfig.Parse(json.ToJsonString(), "/x").Encrypt);
    }

    [Fact]
    public void MissingConfigFileIsRefused()
    {
        string path = Path.Combine(_files.Dir, "absent.json");
        var e = Assert.Throws<ConfigException>(() => ClusterConfig.Load(path));
        Assert.Equal($"{path}: config file not found", e.Message);
    }

    [Fact]
    public void LoadErrorsNameTheFile()
    {
        JsonObject json = ConfigFixture.Valid();
        ConfigFixture.Node(json, 1)["role"] = "spare";
        string path = _files.Write("bad.json", json.ToJsonString());
        var e = Assert.Throws<ConfigException>(() => ClusterConfig.Load(path));
        Assert.StartsWith(path + ": nodes[1].role: unknown role 'spare'", e.Message);
    }

    [Fact]
    public void NodeLookupOfAnUnknownIdNamesTheKnownIds()
    {
        ClusterConfig config = ClusterConfig.Parse(ConfigFixture.ValidJson, "/x");
        Assert.Null(config.FindNode(9));
        var e = Assert.Throws<ConfigException>(() => config.Node(9));
        Assert.Equal("node 9 is not in the config (ids: 1, 2, 3)", e.Message);
    }
}
