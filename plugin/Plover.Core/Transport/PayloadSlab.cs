namespace Plover.Transport;

/// <summary>
/// Copies received log entry payloads into large shared arrays ("slabs", 256 KiB, allocated on the large object
/// heap) instead of one small array each. The log keeps payloads until compaction, so per-entry arrays would all
/// survive into older GC generations and be copied on the way; a slab is one object, never moved, and is freed
/// once every entry in it is compacted away (the log is FIFO, so slabs die in order). Not thread-safe.
/// </summary>
public sealed class PayloadSlab
{
    public const int SlabSize = 256 * 1024;
    /// <summary>Payloads at least this big get their own array (they would waste most of a slab's tail).</summary>
    public const int OwnArrayThreshold = 16 * 1024;

    private byte[] _slab = Array.Empty<byte>();
    private int _used;

    public ReadOnlyMemory<byte> Copy(ReadOnlySpan<byte> payload)
    {
        if (payload.IsEmpty) return ReadOnlyMemory<byte>.Empty;
        if (payload.Length >= OwnArrayThreshold) return payload.ToArray();
        if (_slab.Length - _used < payload.Length)
        {
            _slab = GC.AllocateUninitializedArray<byte>(SlabSize);
            _used = 0;
        }
        payload.CopyTo(_slab.AsSpan(_used));
        var m = new ReadOnlyMemory<byte>(_slab, _used, payload.Length);
        _used += payload.Length;
        return m;
    }
}
