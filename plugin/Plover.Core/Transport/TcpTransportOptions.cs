using System.Net;
using Plover.Config;

namespace Plover.Transport;

/// <summary>Settings of a <see cref="TcpTransport"/>. Build from the cluster config with the node wiring.</summary>
public sealed class TcpTransportOptions
{
    public required ClusterIdentity Identity { get; init; }
    /// <summary>Address of every member, this node included (its entry is where it listens).</summary>
    public required IReadOnlyDictionary<int, IPEndPoint> Endpoints { get; init; }
    /// <summary>Overrides the listening address (e.g. port 0 in tests); default: this node's endpoint.</summary>
    public IPEndPoint? ListenEndpoint { get; init; }
    /// <summary>Largest authenticated frame, length field included.</summary>
    public int MaxFrameBytes { get; init; } = FrameFormat.DefaultMaxFrameBytes;
    /// <summary>A peer that lets more than this pile up unsent is dropped (it reconnects when it reads again).</summary>
    public long MaxQueuedBytes { get; init; } = 256L << 20;
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(2);
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan ReconnectMin { get; init; } = TimeSpan.FromMilliseconds(5);
    public TimeSpan ReconnectMax { get; init; } = TimeSpan.FromMilliseconds(500);
    /// <summary>Most connections in the handshake at once (an unauthenticated flood cannot exhaust threads).</summary>
    public int MaxPendingHandshakes { get; init; } = 16;
    /// <summary>Most connections in the handshake at once from one address (a flood from one host leaves room for the peers).</summary>
    public int MaxPendingHandshakesPerSource { get; init; } = 4;
    public Action<string> Log { get; init; } = _ => { };
    /// <summary>Where this node's frames are counted (the sync link counts into the same one); null: a new one.</summary>
    public Metrics.WireTraffic? Traffic { get; init; }
    /// <summary>Carry the frames over UCX after the TCP handshake ("transport": "ucx"); null: over TCP.</summary>
    public Ucx.UcxSettings? Ucx { get; init; }

    /// <summary>Who node selfId is and whom it accepts, from the config (reads its key file: throws ConfigException
    /// if it is bad or is not the node's).</summary>
    public static ClusterIdentity IdentityFromConfig(ClusterConfig config, int selfId) =>
        new(config.Cluster, selfId, config.LoadIdentityKey(selfId), config.Nodes.ToDictionary(n => n.Id, n => n.PublicKey),
            config.Observers.ToDictionary(o => o.Name, o => o.PublicKey), config.Encrypt)
        {
            PreviousNodeKeys = config.Nodes.Where(n => n.PreviousPublicKey is not null).ToDictionary(n => n.Id, n => n.PreviousPublicKey!),
        };

    /// <summary>Options for node selfId of a cluster config (reads the key file: throws ConfigException if it is bad).</summary>
    public static TcpTransportOptions FromConfig(ClusterConfig config, int selfId, Action<string>? log = null)
    {
        config.Node(selfId);   // throws ConfigException naming an unknown id
        return new TcpTransportOptions
        {
            Identity = IdentityFromConfig(config, selfId),
            Endpoints = config.Nodes.ToDictionary(n => n.Id, n => n.Endpoint),
            Log = log ?? (_ => { }),
            Ucx = config.Ucx,
        };
    }
}
