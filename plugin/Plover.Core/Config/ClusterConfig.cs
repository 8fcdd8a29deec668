namespace Plover.Config;

/// <summary>
/// The cluster config file, identical on all nodes (see the example in the project brief). Load/Parse return a
/// fully validated config or throw ConfigException whose message names the file, the field and the problem.
/// Identities: every node (and observer) has its own key pair; the config lists the public keys and names the
/// private key file of this host (keyFile, or a node's own keyFile); LoadIdentityKey reads and checks it.
/// </summary>
public sealed class ClusterConfig
{
    internal ClusterConfig(string cluster, string? keyFile, IReadOnlyList<NodeConfig> nodes, TimeoutConfig timeouts,
        SyncConfig sync, HashingConfig hashing, LibraryMode mode, IReadOnlyList<ObserverConfig> observers, bool encrypt)
    {
        Observers = observers;
        Encrypt = encrypt;
        Mode = mode;
        Cluster = cluster;
        KeyFile = keyFile;
        Nodes = nodes;
        Timeouts = timeouts;
        Sync = sync;
        Hashing = hashing;
    }

    public string Cluster { get; }
    /// <summary>What libplover does inside QEMU: replicate (the product) or probe (attach, observe, obey the admin
    /// socket; for bring-up and tests of the QEMU integration).</summary>
    public LibraryMode Mode { get; }
    /// <summary>Absolute path of this host's private key file (a relative keyFile is taken relative to the config
    /// file's folder), or null when every node names its own.</summary>
    public string? KeyFile { get; }
    /// <summary>Who may read status (<c>plover status</c>), and nothing else.</summary>
    public IReadOnlyList<ObserverConfig> Observers { get; }
    /// <summary>Replication traffic (consensus and sync link) encrypted with AES-GCM (true, the default) or only
    /// authenticated (false: guest RAM crosses the network in clear text).</summary>
    public bool Encrypt { get; }
    public IReadOnlyList<NodeConfig> Nodes { get; }
    public TimeoutConfig Timeouts { get; }
    public SyncConfig Sync { get; }
    public HashingConfig Hashing { get; }
    /// <summary>"transport": "ucx": consensus frames and the sync link travel over UCX (RDMA verbs where the host has
    /// them) after the TCP handshake; null ("tcp", the default): over TCP.</summary>
    public Transport.Ucx.UcxSettings? Ucx { get; internal init; }

    /// <summary>Reads and validates the config file at <paramref name="path"/>.</summary>
    public static ClusterConfig Load(string path)
    {
        string full = Path.GetFullPath(path);
        string json;
        try
        {
            json = File.ReadAllText(full);
        }
        catch (FileNotFoundException)
        {
            throw new ConfigException($"{full}: config file not found");
        }
        catch (DirectoryNotFoundException)
        {
            throw new ConfigException($"{full}: config file not found (no such directory)");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"{full}: cannot read the config file: {e.Message}", e);
        }
        return ConfigValidator.Validate(json, Path.GetDirectoryName(full)!, full);
    }

    /// <summary>Validates config text; relative paths in it are taken relative to <paramref name="baseDir"/>.</summary>
    public static ClusterConfig Parse(string json, string baseDir) =>
        ConfigValidator.Validate(json, Path.GetFullPath(baseDir), "config");

    /// <summary>The node with this id; ConfigException when there is none.</summary>
    public NodeConfig Node(int id) =>
        FindNode(id) ?? throw new ConfigException(
            $"node {id} is not in the config (ids: {string.Join(", ", Nodes.Select(n => n.Id))})");

    /// <summary>The node with this id, or null.</summary>
    public NodeConfig? FindNode(int id)
    {
        foreach (NodeConfig node in Nodes)
            if (node.Id == id)
                return node;
        return null;
    }

    /// <summary>Where a node's field sits in the config file, for messages: "nodes[2].metrics".</summary>
    public string NodeField(NodeConfig node, string field)
    {
        for (int i = 0; i < Nodes.Count; i++)
            if (Nodes[i].Id == node.Id) return $"nodes[{i}].{field}";
        return $"node {node.Id}'s {field}";
    }

    /// <summary>The node with this role (the config has exactly one of each).</summary>
    public NodeConfig NodeWithRole(NodeRole role) => Nodes.First(n => n.Role == role);

    /// <summary>The private key file of node id and the config field that names it.</summary>
    public (string Path, string Field) KeyFileOf(int id)
    {
        var node = Node(id);
        if (node.KeyFile is { } own) return (own, NodeField(node, "keyFile"));
        if (KeyFile is { } shared) return (shared, "keyFile");
        throw new ConfigException($"keyFile: missing (node {id} has no {NodeField(node, "keyFile")} and there is no top-level keyFile)");
    }

    /// <summary>Node id's identity key: its key file, checked (mode 0600, size, a P-256 pair) and matching the
    /// node's publicKey. Throws ConfigException naming the field and the file.</summary>
    public Transport.IdentityKey LoadIdentityKey(int id)
    {
        var (path, field) = KeyFileOf(id);
        var key = LoadKeyFile(path, field);
        var node = Node(id);
        if (!key.PublicKey.AsSpan().SequenceEqual(node.PublicKey))
            throw new ConfigException($"{field}: '{path}' is not node {id}'s key: its public key {key.PublicKeyText} is not " +
                                      $"{NodeField(node, "publicKey")}");
        return key;
    }

    /// <summary>An observer's key from path, and the observer it belongs to (by public key). Throws ConfigException.</summary>
    public (Transport.IdentityKey Key, ObserverConfig Observer) LoadObserverKey(string path, string field)
    {
        var key = LoadKeyFile(path, field);
        var observer = Observers.FirstOrDefault(o => o.PublicKey.AsSpan().SequenceEqual(key.PublicKey))
            ?? throw new ConfigException($"{field}: the key in '{path}' (public key {key.PublicKeyText}) is not an observer's in " +
                                         $"the config (observers: {(Observers.Count == 0 ? "none" : string.Join(", ", Observers.Select(o => o.Name)))})");
        return (key, observer);
    }

    private static Transport.IdentityKey LoadKeyFile(string path, string field)
    {
        try { return Transport.IdentityKey.Load(path); }
        catch (InvalidDataException e) { throw new ConfigException($"{field}: {e.Message}", e); }
    }
}
