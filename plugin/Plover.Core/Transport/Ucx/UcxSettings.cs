namespace Plover.Transport.Ucx;

/// <summary>How a UCX worker makes progress.</summary>
public enum UcxProgress
{
    /// <summary>The progress thread sleeps on the worker's event file descriptor (shared hosts: no core spent idle).</summary>
    Event,
    /// <summary>The progress thread polls without sleeping (dedicated hosts: lowest latency, one core per worker).</summary>
    Busy,
}

/// <summary>
/// The cluster config's choice of UCX ("transport": "ucx"). Variables is UCX's own configuration (UCX_TLS,
/// UCX_NET_DEVICES, ...) applied to every worker on top of the process environment, which UCX reads as usual.
/// </summary>
/// OneSided: the sync link writes page frames one-sided into the peer's ring (<see cref="UcxFrameRing"/>): for RDMA
/// fabrics, where that is an RDMA WRITE. Over UCX's TCP transport UCX emulates each put with messages and
/// acknowledgements, which measured 20x slower than the stream (README), so it is off unless asked for.
/// PagePuts: the backup registers its sync staging buffer and the primary writes the divergent pages (or sub-blocks)
/// straight into it with ucp_put, announcing each batch with a small frame that carries their hashes
/// (Sync/StagingRegion.cs, Sync/SyncEngine.Puts.cs). Also for RDMA fabrics; off unless asked for, like OneSided.
public sealed record UcxSettings(UcxProgress Progress, IReadOnlyDictionary<string, string> Variables, bool OneSided = false, bool PagePuts = false)
{
    public static readonly UcxSettings Default = new(UcxProgress.Event, new Dictionary<string, string>());

    /// <summary>UCX over TCP only (what the tests use: no RDMA device here, and shared memory would hide the network).</summary>
    public static readonly UcxSettings OverTcp = new(UcxProgress.Event, new Dictionary<string, string> { ["UCX_TLS"] = "tcp" });

    /// <summary><see cref="OverTcp"/> with one-sided page frames (emulated by UCX over TCP: slow, but the same code path as on RDMA).</summary>
    public static readonly UcxSettings OverTcpOneSided = OverTcp with { OneSided = true };

    /// <summary><see cref="OverTcp"/> with pages put straight into the backup's staging buffer (emulated over TCP).</summary>
    public static readonly UcxSettings OverTcpPagePuts = OverTcp with { PagePuts = true };
}
