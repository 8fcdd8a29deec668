using System.Runtime.InteropServices;

namespace Plover.Sync;

/// <summary>
/// A growable, 64-byte aligned native array of T that keeps its memory across syncs (grown, never shrunk), so a
/// sync allocates nothing once the largest size has been seen. Not thread-safe.
/// </summary>
public sealed unsafe class NativeBuffer<T> : IDisposable where T : unmanaged
{
    private T* _ptr;
    private ulong _capacity;

    public T* Pointer => _ptr;
    public ulong Capacity => _capacity;

    /// <summary>Makes room for count elements (contents are not kept when it grows).</summary>
    public T* Ensure(ulong count)
    {
        if (count <= _capacity && _ptr != null) return _ptr;
        Free();
        ulong want = Math.Max(count, 64);
        _ptr = (T*)NativeMemory.AlignedAlloc((nuint)(want * (ulong)sizeof(T)), 64);
        _capacity = want;
        return _ptr;
    }

    public Span<T> Span(ulong start, int count) => new(_ptr + start, count);

    public void Clear(ulong count) => NativeMemory.Clear(_ptr, (nuint)(count * (ulong)sizeof(T)));

    private void Free()
    {
        if (_ptr != null) NativeMemory.AlignedFree(_ptr);
        _ptr = null;
        _capacity = 0;
    }

    /// <summary>Gives the memory back (the next <see cref="Ensure"/> allocates again).</summary>
    public void Release() => Free();

    public void Dispose() => Free();
}
