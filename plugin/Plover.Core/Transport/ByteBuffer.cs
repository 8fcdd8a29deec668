using System.Buffers;

namespace Plover.Transport;

/// <summary>
/// A growable byte window over a pooled array: data lives in [Start, End). Used for a connection's receive
/// buffer (append at End, consume at Start) and send queues (append, then hand the whole thing to the socket).
/// Grows only when a larger frame than ever before is seen, so steady traffic allocates nothing.
/// Not thread-safe.
/// </summary>
public sealed class ByteBuffer : IDisposable
{
    private byte[] _array;
    private int _start;
    private int _end;

    public ByteBuffer(int initialCapacity = 64 * 1024) => _array = ArrayPool<byte>.Shared.Rent(initialCapacity);

    public int Count => _end - _start;
    public int Capacity => _array.Length;
    public ReadOnlySpan<byte> Data => _array.AsSpan(_start, _end - _start);
    public ReadOnlyMemory<byte> Memory => _array.AsMemory(_start, _end - _start);

    /// <summary>Returns at least minBytes of writable space after the data (grows or compacts as needed).</summary>
    public Span<byte> GetSpace(int minBytes)
    {
        EnsureFree(minBytes);
        return _array.AsSpan(_end);
    }

    /// <summary>Marks n bytes written into the space returned by GetSpace.</summary>
    public void Commit(int n)
    {
        if ((uint)n > (uint)(_array.Length - _end)) throw new ArgumentOutOfRangeException(nameof(n));
        _end += n;
    }

    /// <summary>Reserves exactly n bytes after the data and returns them for writing.</summary>
    public Span<byte> Append(int n)
    {
        EnsureFree(n);
        var s = _array.AsSpan(_end, n);
        _end += n;
        return s;
    }

    public void Consume(int n)
    {
        if ((uint)n > (uint)Count) throw new ArgumentOutOfRangeException(nameof(n));
        _start += n;
        if (_start == _end) _start = _end = 0;
    }

    public void Clear() => _start = _end = 0;

    /// <summary>Drops data past the first count bytes (undoes a partly written append).</summary>
    public void Truncate(int count)
    {
        if ((uint)count > (uint)Count) throw new ArgumentOutOfRangeException(nameof(count));
        _end = _start + count;
    }

    /// <summary>Makes sure a frame of totalBytes starting at Start fits without another resize.</summary>
    public void EnsureContiguous(int totalBytes)
    {
        if (_array.Length - _start >= totalBytes) return;
        EnsureFree(totalBytes - Count);
    }

    private void EnsureFree(int n)
    {
        if (_array.Length - _end >= n) return;
        int count = Count;
        if (_array.Length - count >= n && _start > 0)
        {
            Buffer.BlockCopy(_array, _start, _array, 0, count);   // compact in place
        }
        else
        {
            long want = Math.Max((long)_array.Length * 2, (long)count + n);
            var bigger = ArrayPool<byte>.Shared.Rent((int)Math.Min(want, Array.MaxLength));
            Buffer.BlockCopy(_array, _start, bigger, 0, count);
            ArrayPool<byte>.Shared.Return(_array);
            _array = bigger;
        }
        _start = 0;
        _end = count;
    }

    public void Dispose()
    {
        var a = Interlocked.Exchange(ref _array, Array.Empty<byte>());
        if (a.Length > 0) ArrayPool<byte>.Shared.Return(a);
        _start = _end = 0;
    }
}
