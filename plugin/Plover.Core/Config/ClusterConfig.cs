namespace Plover.Config;

/// <summary>
/// The cluster config file, identical on all nodes (see the example in the project brief). Load/Parse return a
/// fully validated config or throw ConfigException whose message names the file, the field and the problem.
/// The key file is only named here; LoadKey reads and checks it.
/// </summary>
public sealed class ClusterConfig
{
    /// <summary>A cluster key must have at least this many bytes.</summary>
    public const int MinKeyBytes = 32;

    internal ClusterConfig(string cluster, string keyFile, IReadOnlyList<NodeConfig> nodes, TimeoutConfig timeouts,
        SyncConfig sync, HashingConfig hashing, LibraryMode mode = LibraryMode.Replicate)
    {
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
    /// <summary>Absolute path (a relative keyFile is taken relative to the config file's folder).</summary>
    public string KeyFile { get; }
    public IReadOnlyList<NodeConfig> Nodes { get; }
    public TimeoutConfig Timeouts { get; }
    public SyncConfig Sync { get; }
    public HashingConfig Hashing { get; }

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

    /// <summary>The cluster key: the key file's bytes, at least MinKeyBytes of them.</summary>
    public byte[] LoadKey()
    {
        byte[] key;
        try
        {
            key = File.ReadAllBytes(KeyFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            string why = e is FileNotFoundException or DirectoryNotFoundException ? "file not found" : e.Message;
            throw new ConfigException($"keyFile: cannot read '{KeyFile}': {why}", e);
        }
        if (key.Length < MinKeyBytes)
            throw new ConfigException($"keyFile: '{KeyFile}' holds {key.Length} bytes; a cluster key needs at least " +
                                      $"{MinKeyBytes}");
        return key;
    }
}
