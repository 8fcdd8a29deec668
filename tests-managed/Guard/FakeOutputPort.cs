using Plover.Guard;

namespace Plover.Tests.Guard;

/// <summary>A host NIC output buffer as filter-plover keeps it: frames tagged with the open epoch, held until released.</summary>
public sealed class FakeOutputPort : IOutputPort
{
    private readonly List<(ulong Epoch, int Frame)> _held = new();
    private ulong _open = 1;

    public OutputMode Mode { get; private set; } = OutputMode.Hold;
    public List<int> Sent { get; } = new();
    public List<int> Dropped { get; } = new();
    public ulong OpenEpoch => _open;
    public int Held { get { lock (_held) return _held.Count; } }

    /// <summary>The guest sends frame id: held in the open epoch, or sent at once in Pass mode.</summary>
    public void GuestSends(int frame)
    {
        lock (_held)
        {
            if (Mode == OutputMode.Pass) Sent.Add(frame);
            else _held.Add((_open, frame));
        }
    }

    public ulong Cut() { lock (_held) return _open++; }

    public long Release(ulong uptoEpoch)
    {
        lock (_held)
        {
            var go = _held.Where(h => h.Epoch <= uptoEpoch).ToList();
            _held.RemoveAll(h => h.Epoch <= uptoEpoch);
            Sent.AddRange(go.Select(h => h.Frame));
            return go.Count;
        }
    }

    public long Discard(ulong uptoEpoch)
    {
        lock (_held)
        {
            var go = _held.Where(h => h.Epoch <= uptoEpoch).ToList();
            _held.RemoveAll(h => h.Epoch <= uptoEpoch);
            Dropped.AddRange(go.Select(h => h.Frame));
            return go.Count;
        }
    }

    public void SetMode(OutputMode mode) { lock (_held) Mode = mode; }
}
