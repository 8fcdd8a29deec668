using Plover.Consensus;
using Plover.Transport;

namespace Plover.Node;

/// <summary>
/// Proposals waiting for the consensus thread: payloads copied back to back into one buffer, so queueing
/// allocates nothing. Double-buffered: the consensus thread takes everything queued in one swap (which is what
/// batches the proposals that arrived during a round into one Accept) and hands the buffers back cleared.
/// </summary>
internal sealed class ConsensusProposalQueue
{
    private readonly object _lock = new();
    private readonly int _maxBytes;
    private ByteBuffer _data = new(256 * 1024);
    private List<(EntryType Type, int Length)> _items = new();
    private ByteBuffer _spareData = new(256 * 1024);
    private List<(EntryType Type, int Length)> _spareItems = new();

    public ConsensusProposalQueue(int maxBytes) => _maxBytes = maxBytes;

    public bool IsEmpty
    {
        get { lock (_lock) return _items.Count == 0; }
    }

    /// <summary>Copies the payload in; false if the queue is full (a lone oversized proposal is still taken).</summary>
    public bool TryAdd(EntryType type, ReadOnlySpan<byte> payload)
    {
        lock (_lock)
        {
            if (_items.Count > 0 && (long)_data.Count + payload.Length > _maxBytes) return false;
            payload.CopyTo(_data.Append(payload.Length));
            _items.Add((type, payload.Length));
            return true;
        }
    }

    /// <summary>Swaps out everything queued (empty lists if nothing). Give the buffers back with <see cref="Recycle"/>.</summary>
    public (ByteBuffer Data, List<(EntryType Type, int Length)> Items) TakeAll()
    {
        lock (_lock)
        {
            var taken = (_data, _items);
            (_data, _items) = (_spareData, _spareItems);
            _spareData = null!;
            _spareItems = null!;
            return taken;
        }
    }

    public void Recycle(ByteBuffer data, List<(EntryType Type, int Length)> items)
    {
        data.Clear();
        items.Clear();
        lock (_lock) (_spareData, _spareItems) = (data, items);
    }
}
