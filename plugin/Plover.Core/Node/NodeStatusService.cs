using Google.Protobuf;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Node;

/// <summary>
/// NodeStatus between the members of a cluster (and to observers through the transport): answers a peer's
/// NodeStatusRequest with <see cref="Provider"/>'s status, and keeps the last status each peer sent. The start-up
/// probe (<see cref="StartupProbe"/>) uses it to tell a fresh cluster from a running one.
/// </summary>
public sealed class NodeStatusService
{
    private readonly TcpTransport _transport;
    private readonly Lock _lock = new();
    private readonly Dictionary<int, (NodeStatus Status, long ReceivedMs)> _peers = new();
    private readonly ProtobufBody _body = new();

    public NodeStatusService(TcpTransport transport, FrameDispatcher dispatcher, Func<NodeStatus> provider)
    {
        _transport = transport;
        Provider = provider;
        dispatcher.Register(FrameType.NodeStatusRequest, (int peer, in Frame _) => Answer(peer));
        dispatcher.Register(FrameType.NodeStatus, OnStatus);
        transport.ObserverStatus = () => Provider();
    }

    /// <summary>This node's status now (replaced as the node's components come up).</summary>
    public Func<NodeStatus> Provider { get; set; }

    /// <summary>Asks every connected peer for its status (answers arrive in <see cref="Latest"/>).</summary>
    public void RequestAll()
    {
        var request = new ProtobufBody(FrameType.NodeStatusRequest, new NodeStatusRequest());
        foreach (int peer in _transport.Peers) _transport.Send(peer, request);
        _transport.Flush();
    }

    /// <summary>The last status peer sent, if it was received after sinceMs (Environment.TickCount64).</summary>
    public NodeStatus? Latest(int peer, long sinceMs = 0)
    {
        lock (_lock)
            return _peers.TryGetValue(peer, out var s) && s.ReceivedMs >= sinceMs ? s.Status : null;
    }

    private void Answer(int peer)
    {
        NodeStatus status = Provider();
        lock (_body) _transport.Send(peer, _body.Set(FrameType.NodeStatus, status));
        _transport.Flush(peer);
    }

    private void OnStatus(int peer, in Frame frame)
    {
        NodeStatus status;
        try { status = NodeStatus.Parser.ParseFrom(frame.Header); }
        catch (InvalidProtocolBufferException e) { throw new InvalidDataException($"malformed NodeStatus: {e.Message}"); }
        lock (_lock) _peers[peer] = (status, Environment.TickCount64);
    }
}
