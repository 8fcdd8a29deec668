namespace Plover.Transport;

/// <summary>
/// Authenticated, ordered, message-framed links from this node to each peer.
/// Sending: <see cref="Send(int, IFrameBody)"/> encodes a frame at once into the peer's send queue (the body's
/// buffers may be reused as soon as it returns); <see cref="Flush"/> puts everything queued on the wire, several
/// frames in one write. Receiving: every verified frame goes to the <see cref="IFrameSink"/> on a transport
/// thread, as spans over the receive buffer. Frames to a peer that is not connected are dropped (the protocols
/// above retransmit); a connection that misbehaves is closed and reconnected.
///
/// How RDMA (rdma-core verbs over RC queue pairs) maps onto this without touching the layers above:
/// - Send/Flush: each peer has a registered ring in its memory that we may RDMA-WRITE into. Send reserves the
///   next slot of our copy of the ring and IFrameBody.Write fills it in place (same frame format, so the MAC and
///   the decoder are shared); Flush posts one RDMA-WRITE (with IMM, or followed by a tail-pointer write) per
///   peer covering every slot filled since the last flush. Bulk data (pages) can instead be posted as a
///   scatter-gather list straight from registered guest RAM: the body then holds only the protobuf header.
/// - Receive: a poller thread (or the consensus thread itself, busy-polling) watches the local ring's tail,
///   hands each frame to the sink as a span over the ring, and returns the consumed space to the writer with a
///   small RDMA-WRITE of the head pointer.
/// - The handshake, key derivation and per-frame MAC are unchanged (run over a TCP bootstrap connection that
///   also exchanges the queue pair numbers and ring rkeys); connection state events are the QP's state.
/// </summary>
public interface ITransport : IDisposable
{
    int SelfId { get; }
    IReadOnlyList<int> Peers { get; }

    /// <summary>Starts listening and connecting. The sink is called from transport threads from now on.</summary>
    void Start(IFrameSink sink);

    /// <summary>True while an authenticated connection to peer is up.</summary>
    bool IsConnected(int peer);

    /// <summary>Queues one frame to peer; false (frame dropped) when the peer is not connected.</summary>
    bool Send(int peer, IFrameBody body);

    /// <summary>Queues one frame whose body is given as bytes; false when the peer is not connected.</summary>
    bool Send(int peer, FrameType type, ReadOnlySpan<byte> body);

    /// <summary>Writes everything queued, to every peer. Never blocks on a slow peer (an I/O thread finishes the write).</summary>
    void Flush();
}

/// <summary>Receives what a transport delivers. Calls come from transport I/O threads, possibly concurrently for different peers.</summary>
public interface IFrameSink
{
    /// <summary>
    /// One verified frame from an authenticated peer. The spans are valid only during the call. Throw
    /// <see cref="InvalidDataException"/> (or FormatException) to refuse it: the connection is closed and the reason logged.
    /// </summary>
    void OnFrame(int peer, in Frame frame);

    void OnPeerConnected(int peer);

    void OnPeerDisconnected(int peer, string reason);
}
