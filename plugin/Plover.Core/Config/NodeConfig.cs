using System.Net;

namespace Plover.Config;

/// <summary>One node of the cluster.</summary>
public sealed class NodeConfig
{
    internal NodeConfig(int id, NodeRole role, string address, IPEndPoint endpoint, string? admin,
                        string? metricsAddress, IPEndPoint? metrics, byte[] publicKey, string? keyFile, byte[]? previousPublicKey = null)
    {
        PreviousPublicKey = previousPublicKey;
        PublicKey = publicKey;
        KeyFile = keyFile;
        Id = id;
        Role = role;
        Address = address;
        Endpoint = endpoint;
        Admin = admin;
        MetricsAddress = metricsAddress;
        Metrics = metrics;
    }

    /// <summary>Positive, unique in the cluster.</summary>
    public int Id { get; }
    public NodeRole Role { get; }
    /// <summary>"host:port" as written in the config (IPv6 as "[addr]:port").</summary>
    public string Address { get; }
    public IPEndPoint Endpoint { get; }
    /// <summary>Absolute path of the node's admin Unix socket, or null when it has none.</summary>
    public string? Admin { get; }
    /// <summary>"host:port" of the node's Prometheus text endpoint (GET /metrics) as written in the config, or null:
    /// no endpoint (the default).</summary>
    public string? MetricsAddress { get; }
    /// <summary>Where the metrics endpoint listens, or null when the node has none.</summary>
    public IPEndPoint? Metrics { get; }

    /// <summary>The node's identity: its P-256 public key (X | Y), which its handshakes must prove.</summary>
    public byte[] PublicKey { get; }
    /// <summary>The key the node had before a rotation, still accepted from it until the entry is removed (null: none).</summary>
    public byte[]? PreviousPublicKey { get; }
    /// <summary>Absolute path of this node's private key file when the config names one for it (several nodes on
    /// one host); null: the top-level keyFile.</summary>
    public string? KeyFile { get; }

    public override string ToString() => $"node {Id} ({Role.Name()}, {Address})";
}
