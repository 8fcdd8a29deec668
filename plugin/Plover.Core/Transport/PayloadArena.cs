using System.Buffers;
using System.Runtime.InteropServices;

namespace Plover.Transport;

/// <summary>
/// Where a node keeps the payloads of its log entries: copied into large blocks ("slabs", 1 MiB) instead of one small
/// array each, and each slab reused once every entry copied into it is compacted away. The log keeps payloads until
/// compaction, so per-entry arrays would all survive into older GC generations. Slabs live outside the GC heap
/// (native memory behind a MemoryManager): as arrays on the large object heap, growing to the working set (the
/// entries between two compactions, 30 MiB for bench consensus's 1500-byte inputs) brought three full collections.
/// The log is FIFO, so slabs fill and free in order: only the oldest is checked. Not thread-safe (the consensus
/// thread owns it).
///
/// A payload therefore stays valid only until its entry leaves the log of the node that copied it (or, for an
/// entry that never made it into the log, until the log moved past its index): what a committed-entry callback
/// keeps longer (the replica's queue of entries to inject) must be used before that, which compaction after a sync
/// guarantees (everything up to the cut was injected first).
/// </summary>
public sealed class PayloadArena
{
    public const int SlabSize = 1 << 20;
    /// <summary>Payloads at least this big get their own array (they would waste much of a slab's tail).</summary>
    public const int OwnArrayThreshold = SlabSize / 4;

    /// <summary>One slab's native memory. Payloads refer to it through Memory (which keeps it reachable), and the
    /// arena keeps every slab it made, so it is freed only by the finalizer, once the arena and every payload are gone.</summary>
    private sealed unsafe class Slab : MemoryManager<byte>
    {
        private byte* _data = (byte*)NativeMemory.Alloc(SlabSize);
        public int Used;
        public long LastIndex;   // the highest log index whose payload is in here

        ~Slab() => Dispose(false);
        public override Span<byte> GetSpan() => new(_data, SlabSize);
        public override MemoryHandle Pin(int elementIndex = 0) => new(_data + elementIndex);
        public override void Unpin() { }
        protected override void Dispose(bool disposing)
        {
            NativeMemory.Free(_data);
            _data = null;
        }
    }

    private readonly Func<long>? _firstRetained;
    private readonly Queue<Slab> _full = new();
    private Slab? _current;

    /// <param name="firstRetained">The lowest log index whose payload may still be read (the log's first index; it
    /// never decreases). Null: no slabs, every payload gets an array of its own (tests, tools).</param>
    public PayloadArena(Func<long>? firstRetained = null) => _firstRetained = firstRetained;

    /// <summary>Slabs allocated so far (tests).</summary>
    public int Slabs { get; private set; }

    /// <summary>A copy of the payload of the entry at log index.</summary>
    public ReadOnlyMemory<byte> Copy(ReadOnlySpan<byte> payload, long index)
    {
        if (payload.IsEmpty) return ReadOnlyMemory<byte>.Empty;
        if (_firstRetained is null || payload.Length >= OwnArrayThreshold) return payload.ToArray();
        if (_current is null || SlabSize - _current.Used < payload.Length) _current = NextSlab();
        var slab = _current;
        payload.CopyTo(slab.GetSpan()[slab.Used..]);
        ReadOnlyMemory<byte> m = slab.Memory.Slice(slab.Used, payload.Length);
        slab.Used += payload.Length;
        slab.LastIndex = Math.Max(slab.LastIndex, index);
        return m;
    }

    private Slab NextSlab()
    {
        if (_current is not null) _full.Enqueue(_current);
        if (_full.TryPeek(out var oldest) && oldest.LastIndex < _firstRetained!())
        {
            _full.Dequeue();
            oldest.Used = 0;
            oldest.LastIndex = 0;
            return oldest;
        }
        Slabs++;
        return new Slab();
    }
}
