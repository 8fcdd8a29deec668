using System.Runtime.InteropServices;

namespace Plover.Consensus;

/// <summary>
/// The accepted log of one node: a contiguous run of entries FirstIndex..LastIndex. Everything below FirstIndex
/// was committed and compacted (covered by a completed syncvm, i.e. by the VM state). Indices start at 1;
/// an empty log has LastIndex = FirstIndex - 1. Entries are overwritten in place when a higher ballot
/// re-proposes a slot (each slot is one Paxos instance), never truncated from the end.
/// </summary>
public sealed class ConsensusLog
{
    private readonly List<LogEntry> _entries = new();
    private long _first = 1;

    public long FirstIndex => _first;
    public long LastIndex => _first + _entries.Count - 1;
    public int Count => _entries.Count;

    public bool Contains(long index) => index >= _first && index <= LastIndex;

    public LogEntry this[long index]
    {
        get
        {
            if (!Contains(index)) throw new ArgumentOutOfRangeException(nameof(index), $"log index {index} not in [{_first}, {LastIndex}]");
            return _entries[(int)(index - _first)];
        }
    }

    public bool TryGet(long index, out LogEntry entry)
    {
        if (Contains(index)) { entry = _entries[(int)(index - _first)]; return true; }
        entry = default;
        return false;
    }

    /// <summary>Appends at LastIndex + 1 or overwrites an existing slot.</summary>
    public void Set(in LogEntry entry)
    {
        if (entry.Index == LastIndex + 1) _entries.Add(entry);
        else if (Contains(entry.Index)) _entries[(int)(entry.Index - _first)] = entry;
        else throw new ArgumentOutOfRangeException(nameof(entry), $"log index {entry.Index} would leave a gap after {LastIndex} or is compacted below {_first}");
    }

    /// <summary>Copies up to maxEntries entries starting at from (at least one if any exists, even above maxBytes).</summary>
    public LogEntry[] Slice(long from, int maxEntries, long maxBytes) => Range(from, maxEntries, maxBytes).ToArray();

    /// <summary>The entries <see cref="Slice"/> would copy, in place: valid until the log changes.</summary>
    public ReadOnlySpan<LogEntry> Range(long from, int maxEntries, long maxBytes)
    {
        if (from < _first) throw new ArgumentOutOfRangeException(nameof(from), $"log index {from} is compacted (first {_first})");
        if (from > LastIndex) return [];
        int start = (int)(from - _first);
        int n = 0;
        long bytes = 0;
        while (start + n < _entries.Count && n < maxEntries)
        {
            bytes += _entries[start + n].Payload.Length;
            if (n > 0 && bytes > maxBytes) break;
            n++;
        }
        return CollectionsMarshal.AsSpan(_entries).Slice(start, n);
    }

    /// <summary>Drops entries at or below index (which must be committed: the caller checks).</summary>
    public void CompactThrough(long index)
    {
        if (index < _first) return;
        if (index >= LastIndex)
        {
            _entries.Clear();
            _first = index + 1;
            return;
        }
        _entries.RemoveRange(0, (int)(index - _first + 1));
        _first = index + 1;
    }

    public ConsensusLog Clone()
    {
        var c = new ConsensusLog { _first = _first };
        c._entries.AddRange(_entries);
        return c;
    }
}
