using System.Collections.Concurrent;
using Plover.Transport;

namespace Plover.Tests.Transport;

/// <summary>Identity key pairs for tests: one per node id and one observer ("ops"), made once per test run.</summary>
public static class TestKeys
{
    public const string ObserverName = "ops";
    private static readonly ConcurrentDictionary<int, IdentityKey> Nodes = new();
    public static readonly IdentityKey Observer = IdentityKey.Generate();

    public static IdentityKey Node(int id) => Nodes.GetOrAdd(id, _ => IdentityKey.Generate());
    public static string PublicKey(int id) => Node(id).PublicKeyText;

    public static Dictionary<int, byte[]> NodeKeys(IEnumerable<int> ids) => ids.ToDictionary(i => i, i => Node(i).PublicKey);

    /// <summary>Node self of a cluster of members (its own key unless key says otherwise), observer "ops" listed.</summary>
    public static ClusterIdentity Identity(int self, IEnumerable<int> members, string cluster = TransportTestKit.Cluster,
                                           bool encrypt = true, IdentityKey? key = null) =>
        new(cluster, self, key ?? Node(self), NodeKeys(members),
            new Dictionary<string, byte[]> { [ObserverName] = Observer.PublicKey }, encrypt);

    /// <summary>The observer "ops" (or another key claiming its name).</summary>
    public static ClusterIdentity ObserverIdentity(IEnumerable<int> members, string cluster = TransportTestKit.Cluster,
                                                   bool encrypt = true, IdentityKey? key = null) =>
        new(cluster, Handshake.ObserverId, key ?? Observer, NodeKeys(members), null, encrypt) { ObserverName = ObserverName };

    /// <summary>Writes key as a key file (mode 0600); returns path.</summary>
    public static string WriteKeyFile(string path, IdentityKey key)
    {
        File.WriteAllBytes(path, key.ToFileBytes());
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return path;
    }

    /// <summary>A node's identity fields in a config written by a test: its publicKey and its own key file.</summary>
    public static string NodeJson(int id) => $"\"publicKey\": \"{PublicKey(id)}\", \"keyFile\": \"node{id}.key\"";

    /// <summary>The config's observers: "ops".</summary>
    public static string ObserversJson => $"\"observers\": [{{\"name\": \"{ObserverName}\", \"publicKey\": \"{Observer.PublicKeyText}\"}}]";

    /// <summary>Key files node{id}.key for ids in dir, and observer.key.</summary>
    public static void WriteKeyFiles(string dir, IEnumerable<int> ids)
    {
        foreach (int id in ids) WriteKeyFile(Path.Combine(dir, $"node{id}.key"), Node(id));
        WriteKeyFile(Path.Combine(dir, "observer.key"), Observer);
    }
}
