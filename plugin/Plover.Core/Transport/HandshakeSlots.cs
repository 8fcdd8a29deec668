using System.Net;

namespace Plover.Transport;

/// <summary>
/// How many unauthenticated connections may be in their handshake at once: at most Total in all, at most PerSource
/// from one address, so a flood from one host neither exhausts threads nor crowds out a genuine peer connecting
/// from another. Thread-safe.
/// </summary>
public sealed class HandshakeSlots(int total, int perSource)
{
    private readonly Dictionary<IPAddress, int> _bySource = new();
    private int _inUse;

    /// <summary>Takes a slot for source; null if granted, else why not.</summary>
    public string? TryTake(IPAddress source)
    {
        lock (_bySource)
        {
            if (_inUse >= total) return $"too many handshakes in progress ({total})";
            _bySource.TryGetValue(source, out int mine);
            if (mine >= perSource) return $"too many handshakes in progress from {source} ({perSource})";
            _bySource[source] = mine + 1;
            _inUse++;
            return null;
        }
    }

    public void Release(IPAddress source)
    {
        lock (_bySource)
        {
            _inUse--;
            if (_bySource.TryGetValue(source, out int mine) && mine > 1) _bySource[source] = mine - 1;
            else _bySource.Remove(source);
        }
    }
}
