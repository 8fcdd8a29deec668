namespace Plover.Transport;

/// <summary>Handles one type of frame from a peer (see <see cref="IFrameSink.OnFrame"/>).</summary>
public delegate void FrameHandler(int peer, in Frame frame);

/// <summary>
/// Routes frames by type to the component that owns them (consensus, and later syncvm), and fans connection
/// events out to every listener. Register everything before the transport starts.
/// </summary>
public sealed class FrameDispatcher : IFrameSink
{
    private readonly FrameHandler?[] _handlers = new FrameHandler?[256];
    private readonly List<IFrameSink> _listeners = new();

    public void Register(FrameType type, FrameHandler handler)
    {
        if (_handlers[(byte)type] is not null) throw new InvalidOperationException($"frame type {type} already has a handler");
        _handlers[(byte)type] = handler;
    }

    /// <summary>Adds a sink that gets connection events (its OnFrame is not called: register handlers for that).</summary>
    public void AddConnectionListener(IFrameSink listener) => _listeners.Add(listener);

    public void OnFrame(int peer, in Frame frame)
    {
        var h = _handlers[(byte)frame.Type] ?? throw new InvalidDataException($"no handler for frame type {frame.Type}");
        h(peer, frame);
    }

    public void OnPeerConnected(int peer)
    {
        foreach (var l in _listeners) l.OnPeerConnected(peer);
    }

    public void OnPeerDisconnected(int peer, string reason)
    {
        foreach (var l in _listeners) l.OnPeerDisconnected(peer, reason);
    }
}
