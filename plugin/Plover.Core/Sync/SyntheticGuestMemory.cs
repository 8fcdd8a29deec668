using System.Numerics;
using System.Runtime.InteropServices;

namespace Plover.Sync;

/// <summary>
/// Guest RAM for tests and benchmarks: blocks in page-aligned native memory with a host-style dirty bitmap.
/// Guest writes (<see cref="Write"/>) mark a private dirty log; <see cref="DirtySync"/> ORs it into the exported
/// bitmaps the way QEMU's dirty_sync does, so dirt is only seen after a sync harvested it.
/// </summary>
public sealed unsafe class SyntheticGuestMemory : IGuestMemory, IDisposable
{
    private readonly GuestRamBlock[] _blocks;
    private readonly ulong*[] _log;

    public SyntheticGuestMemory(params (string Name, ulong Bytes)[] blocks)
    {
        if (blocks.Length == 0) throw new ArgumentException("at least one block", nameof(blocks));
        _blocks = new GuestRamBlock[blocks.Length];
        _log = new ulong*[blocks.Length];
        for (int b = 0; b < blocks.Length; b++)
        {
            var (name, bytes) = blocks[b];
            if (bytes == 0 || bytes % GuestRamBlock.PageSize != 0) throw new ArgumentException($"block {name}: {bytes} bytes is not a positive multiple of 4096");
            ulong words = (bytes / GuestRamBlock.PageSize + 63) / 64;
            var host = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, GuestRamBlock.PageSize);
            NativeMemory.Clear(host, (nuint)bytes);
            var dirty = (ulong*)NativeMemory.AllocZeroed((nuint)(words * 8));
            _log[b] = (ulong*)NativeMemory.AllocZeroed((nuint)(words * 8));
            _blocks[b] = new GuestRamBlock(name, host, bytes, dirty);
        }
    }

    public IReadOnlyList<GuestRamBlock> Blocks => _blocks;

    public ulong TotalPages => (ulong)_blocks.Sum(b => (long)b.Pages);

    public Span<byte> Page(int block, ulong page)
    {
        var b = _blocks[block];
        if (page >= b.Pages) throw new ArgumentOutOfRangeException(nameof(page));
        return new Span<byte>(b.Host + page * GuestRamBlock.PageSize, GuestRamBlock.PageSize);
    }

    /// <summary>A guest write: changes bytes of one page and logs it dirty.</summary>
    public void Write(int block, ulong page, int offset, ReadOnlySpan<byte> data)
    {
        data.CopyTo(Page(block, page)[offset..]);
        _log[block][page / 64] |= 1UL << (int)(page % 64);
    }

    /// <summary>A guest write of one 8-byte value (cheap way to change a page).</summary>
    public void Write(int block, ulong page, int offset, ulong value) =>
        Write(block, page, offset, MemoryMarshal.AsBytes(new ReadOnlySpan<ulong>(ref value)));

    /// <summary>A guest write that stores what the page already holds: dirty, but unchanged.</summary>
    public void Touch(int block, ulong page) => _log[block][page / 64] |= 1UL << (int)(page % 64);

    /// <summary>Fills every block with pseudo-random bytes, every page distinct (no dirt logged: the initial,
    /// shared state). A 1 MiB random pattern is repeated with each page's first word set to a per-page value, so
    /// a GiB fills at memcpy speed.</summary>
    public void FillRandom(int seed)
    {
        const int PatternBytes = 1 << 20;
        var pattern = new ulong[PatternBytes / 8];
        ulong state = (ulong)seed * 0x9E3779B97F4A7C15UL + 1;
        for (int i = 0; i < pattern.Length; i++)
        {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            pattern[i] = state;
        }
        for (int b = 0; b < _blocks.Length; b++)
        {
            var block = _blocks[b];
            fixed (ulong* source = pattern)
            {
                for (ulong off = 0; off < block.Length; off += PatternBytes)
                {
                    ulong n = Math.Min(PatternBytes, block.Length - off);
                    Buffer.MemoryCopy(source, block.Host + off, n, n);
                }
            }
            for (ulong p = 0; p < block.Pages; p++)
                *(ulong*)(block.Host + p * GuestRamBlock.PageSize) = ((ulong)seed << 40) ^ ((ulong)b << 32) ^ p ^ 0x5EED;
        }
    }

    /// <summary>Makes this memory a byte copy of other (same layout); no dirt logged.</summary>
    public void CopyFrom(SyntheticGuestMemory other)
    {
        for (int b = 0; b < _blocks.Length; b++)
            Buffer.MemoryCopy(other._blocks[b].Host, _blocks[b].Host, _blocks[b].Length, _blocks[b].Length);
    }

    /// <summary>Byte-for-byte equality with other; first differing (block, page) or null.</summary>
    public (int Block, ulong Page)? FirstDifference(SyntheticGuestMemory other)
    {
        for (int b = 0; b < _blocks.Length; b++)
        {
            byte* x = _blocks[b].Host, y = other._blocks[b].Host;
            const ulong Chunk = 1 << 20;
            for (ulong off = 0; off < _blocks[b].Length; off += Chunk)
            {
                int n = (int)Math.Min(Chunk, _blocks[b].Length - off);
                if (new ReadOnlySpan<byte>(x + off, n).SequenceEqual(new ReadOnlySpan<byte>(y + off, n))) continue;
                for (ulong p = off / GuestRamBlock.PageSize; ; p++)
                    if (!new ReadOnlySpan<byte>(x + p * 4096, 4096).SequenceEqual(new ReadOnlySpan<byte>(y + p * 4096, 4096)))
                        return (b, p);
            }
        }
        return null;
    }

    /// <summary>A snapshot of every block (tests of abort paths: the state must stay exactly this).</summary>
    public byte[][] Snapshot() => _blocks.Select(b => new ReadOnlySpan<byte>(b.Host, checked((int)b.Length)).ToArray()).ToArray();

    public bool Matches(byte[][] snapshot) =>
        _blocks.Select((b, i) => new ReadOnlySpan<byte>(b.Host, checked((int)b.Length)).SequenceEqual(snapshot[i])).All(x => x);

    /// <summary>dirty_sync: OR the logged dirt into the exported bitmaps; returns the bits set there.</summary>
    public long DirtySync()
    {
        long set = 0;
        for (int b = 0; b < _blocks.Length; b++)
        {
            var block = _blocks[b];
            for (ulong w = 0; w < block.Words; w++)
            {
                block.Dirty[w] |= _log[b][w];
                _log[b][w] = 0;
                set += BitOperations.PopCount(block.Dirty[w]);
            }
        }
        return set;
    }

    public void DirtyClear()
    {
        foreach (var block in _blocks) NativeMemory.Clear(block.Dirty, (nuint)(block.Words * 8));
    }

    public void DirtyMarkAll()
    {
        foreach (var block in _blocks)
        {
            for (ulong w = 0; w < block.Words; w++) block.Dirty[w] = ulong.MaxValue;
            if (block.Pages % 64 != 0) block.Dirty[block.Words - 1] = (1UL << (int)(block.Pages % 64)) - 1;
        }
    }

    public void Dispose()
    {
        for (int b = 0; b < _blocks.Length; b++)
        {
            if (_blocks[b].Host == null) continue;
            NativeMemory.AlignedFree(_blocks[b].Host);
            NativeMemory.Free(_blocks[b].Dirty);
            NativeMemory.Free(_log[b]);
            _blocks[b] = default;
        }
    }
}
