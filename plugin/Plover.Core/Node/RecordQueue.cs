using Plover.Transport;

namespace Plover.Node;

/// <summary>
/// Byte records, each with a tag, queued by any thread for one taker: copied back to back into one buffer, so
/// queueing allocates nothing. Double-buffered: the taker swaps out everything queued in one go (which is what
/// batches the proposals that arrived during a round into one Accept) and hands the buffers back cleared. The
/// consensus driver queues proposals (tagged with their entry type) and received frames (tagged with the peer).
/// </summary>
internal sealed class RecordQueue<TTag> where TTag : struct
{
    private readonly object _lock = new();
    private readonly long _maxBytes;
    private ByteBuffer _data = new(256 * 1024);
    private List<(TTag Tag, int Length)> _items = new();
    private ByteBuffer _spareData = new(256 * 1024);
    private List<(TTag Tag, int Length)> _spareItems = new();

    /// <param name="maxBytes">Queued bytes beyond which records are refused (backpressure).</param>
    public RecordQueue(long maxBytes = long.MaxValue) => _maxBytes = maxBytes;

    public bool IsEmpty
    {
        get { lock (_lock) return _items.Count == 0; }
    }

    /// <summary>Copies the record in; false if the queue is full (a lone oversized record is still taken).</summary>
    public bool TryAdd(TTag tag, ReadOnlySpan<byte> record)
    {
        lock (_lock)
        {
            if (_items.Count > 0 && (long)_data.Count + record.Length > _maxBytes) return false;
            record.CopyTo(_data.Append(record.Length));
            _items.Add((tag, record.Length));
            return true;
        }
    }

    /// <summary>Swaps out everything queued (empty lists if nothing). Give the buffers back with <see cref="Recycle"/>.</summary>
    public (ByteBuffer Data, List<(TTag Tag, int Length)> Items) TakeAll()
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

    public void Recycle(ByteBuffer data, List<(TTag Tag, int Length)> items)
    {
        data.Clear();
        items.Clear();
        lock (_lock) (_spareData, _spareItems) = (data, items);
    }
}
