using System.Numerics;
using Plover.Hashing;

namespace Plover.Sync;

/// <summary>
/// The disk part of one replica's sync (issue 15 items 3 and 4), without the wire: take the drives' dirty blocks at
/// the cut, OR in the peer's, then go through the union chunk by chunk: list the chunk's blocks, read them into
/// memory, hash them with the RAM's page hasher and compare with the peer's hashes; the divergent blocks are what
/// the primary sends and the backup stages (<see cref="DiskStaging"/>). A chunk holds at most
/// <see cref="ChunkBlocks"/> blocks, so a sync needs that much memory whatever the union (a full sync's is every
/// block of every drive): the read buffer is ChunkBlocks x 4 KiB, the hashes and lists 8 bytes per block of it.
///
/// Taking clears QEMU's bitmap, so the dirt taken is kept here (pending) until the sync completes: after an abort the
/// next sync covers it again, as RAM's uncleared bitmaps do. Each chunk is read with the VM stopped, once: with one
/// chunk the copy is the primary's snapshot too (an early resume loses nothing) and is hashed off the main thread.
/// Block order is global block order (<see cref="DiskLayout"/>) on both replicas, so hashes line up by index and
/// both sides cut the union into the same chunks.
/// </summary>
public sealed unsafe class DiskBlocks : IDisposable
{
    private const int BlockSize = GuestRamBlock.PageSize;
    private readonly DiskLayout _layout;
    private readonly NativeBuffer<ulong> _pending = new();   // taken, not yet covered by a completed sync
    private readonly NativeBuffer<ulong> _union = new();
    private readonly NativeBuffer<ulong> _list = new();      // global numbers of the chunk's blocks, ascending
    private readonly NativeBuffer<byte> _data = new();       // the chunk's blocks in list order, each padded to 4 KiB
    private readonly NativeBuffer<ulong> _hashes = new();    // the chunk's
    private readonly NativeBuffer<ulong> _divergent = new(); // chunk indices whose hashes differ
    private readonly NativeBuffer<ulong> _peer = new();      // the peer's bitmap, then its hashes of a chunk, as received
    private ulong _unionBlocks, _divergentBlocks;
    private ulong _chunkBlocks = 1, _chunkFirst, _chunkCount, _nextBlock;

    public DiskBlocks(DiskLayout layout)
    {
        _layout = layout;
        _pending.Ensure(Math.Max(layout.TotalWords, 1));
        _pending.Clear(Math.Max(layout.TotalWords, 1));
    }

    public DiskLayout Layout => _layout;
    public ulong UnionBlocks => _unionBlocks;
    /// <summary>The current chunk's divergent blocks (after <see cref="Compare"/>).</summary>
    public ulong DivergentBlocks => _divergentBlocks;
    /// <summary>Most blocks in a chunk (set by <see cref="OrPeer"/>).</summary>
    public ulong ChunkBlocks => _chunkBlocks;
    /// <summary>Chunks the union is cut into (0 for an empty union).</summary>
    public ulong Chunks => (_unionBlocks + _chunkBlocks - 1) / _chunkBlocks;
    /// <summary>Union index of the current chunk's first block, and its blocks.</summary>
    public ulong ChunkFirst => _chunkFirst;
    public ulong ChunkCount => _chunkCount;
    /// <summary>Bytes held for the blocks read (tests: bounded by the chunk, not the union).</summary>
    public ulong ReadBufferBytes => _data.Capacity;

    /// <summary>This side's dirty blocks (the pending bitmap), as sent to the peer.</summary>
    public ReadOnlySpan<ulong> LocalBitmap => new(_pending.Pointer, checked((int)_layout.TotalWords));
    internal ulong* LocalBitmapPointer => _pending.Pointer;
    internal ulong LocalBlocks => PopCount(_pending.Pointer, _layout.TotalWords);

    /// <summary>The current chunk's hashes (after <see cref="Hash"/>), in union order.</summary>
    public ReadOnlySpan<ulong> Hashes => new(_hashes.Pointer, checked((int)_chunkCount));

    /// <summary>A reused buffer of count words for what the peer sends (its bitmap, then its hashes of a chunk):
    /// nothing is allocated per sync.</summary>
    public Span<ulong> PeerWords(ulong count) => new(_peer.Ensure(Math.Max(count, 1)), checked((int)count));

    /// <summary>The union of both sides' dirty blocks (after <see cref="OrPeer"/>).</summary>
    public ReadOnlySpan<ulong> Union => new(_union.Pointer, checked((int)_layout.TotalWords));

    /// <summary>MAIN, VM stopped: takes every drive's new dirt into the pending bitmap and seeds the union with it;
    /// returns the blocks pending.</summary>
    public ulong Take(IDiskHost host)
    {
        for (int d = 0; d < _layout.DriveCount; d++)
        {
            var words = new Span<ulong>(_pending.Pointer + _layout.WordBase(d), checked((int)_layout.Drive(d).Words));
            long taken = host.TakeDirty(d, words);
            if (taken < 0) throw new InvalidOperationException($"drive_dirty_take of drive {d} failed: {taken}");
        }
        ulong words0 = _layout.TotalWords;
        Buffer.MemoryCopy(_pending.Pointer, _union.Ensure(Math.Max(words0, 1)), words0 * 8, words0 * 8);
        return PopCount(_pending.Pointer, words0);
    }

    /// <summary>Marks every block of every drive pending (a full sync: a joining backup).</summary>
    public void MarkAll()
    {
        for (int d = 0; d < _layout.DriveCount; d++)
        {
            ulong* words = _pending.Pointer + _layout.WordBase(d);
            ulong blocks = _layout.Drive(d).Blocks;
            for (ulong w = 0; w < _layout.Drive(d).Words; w++)
                words[w] = blocks - w * 64 >= 64 ? ulong.MaxValue : (1UL << (int)(blocks - w * 64)) - 1;
        }
    }

    /// <summary>ORs the peer's bitmap into the union and starts going through it in chunks of at most chunkBlocks
    /// blocks (<see cref="NextChunk"/>); returns the union's block count. A bit past a drive's last block is refused
    /// (the peer's layout was checked, its bits are not trusted).</summary>
    public ulong OrPeer(ReadOnlySpan<ulong> peer, ulong chunkBlocks = ulong.MaxValue)
    {
        if (chunkBlocks == 0) throw new ArgumentOutOfRangeException(nameof(chunkBlocks), "a chunk holds at least one block");
        if ((ulong)peer.Length != _layout.TotalWords)
            throw new SyncProtocolException($"the peer's disk bitmap has {peer.Length} words, the drives {_layout.TotalWords}");
        ulong* union = _union.Pointer;
        for (int d = 0; d < _layout.DriveCount; d++)
        {
            ulong last = _layout.WordBase(d) + _layout.Drive(d).Words - 1;
            int used = (int)(_layout.Drive(d).Blocks % 64);
            if (used != 0 && (peer[(int)last] >> used) != 0)
                throw new SyncProtocolException($"the peer's disk bitmap marks blocks past the end of drive '{_layout.Drive(d).Name}'");
        }
        for (int w = 0; w < peer.Length; w++) union[w] |= peer[w];
        _unionBlocks = PopCount(union, _layout.TotalWords);
        _chunkBlocks = Math.Min(chunkBlocks, Math.Max(_unionBlocks, 1));
        _chunkFirst = _chunkCount = _nextBlock = 0;
        _divergentBlocks = 0;
        return _unionBlocks;
    }

    /// <summary>Lists the next chunk's blocks (the union's next ChunkBlocks blocks, ascending); false when the union
    /// is done.</summary>
    public bool NextChunk()
    {
        _chunkFirst += _chunkCount;
        _chunkCount = 0;
        _divergentBlocks = 0;
        ulong want = Math.Min(_chunkBlocks, _unionBlocks - _chunkFirst);
        if (want == 0) return false;
        ulong* list = _list.Ensure(_chunkBlocks);
        ulong* union = _union.Pointer;
        ulong k = 0, w = _nextBlock / 64;
        ulong bits = union[w] & (ulong.MaxValue << (int)(_nextBlock % 64));
        while (k < want)
        {
            for (; bits != 0 && k < want; bits &= bits - 1)
                list[k++] = w * 64 + (ulong)BitOperations.TrailingZeroCount(bits);
            if (k < want) bits = union[++w];
        }
        _chunkCount = k;
        _nextBlock = list[k - 1] + 1;
        return true;
    }

    /// <summary>Whether global block g is a block of the current chunk (what the backup accepts from the primary).</summary>
    public bool InChunk(ulong g) =>
        _chunkCount > 0 && g >= _list.Pointer[0] && g <= _list.Pointer[_chunkCount - 1]
        && _layout.TryLocate(g, out _, out _) && (_union.Pointer[g / 64] & (1UL << (int)(g % 64))) != 0;

    /// <summary>MAIN: reads the chunk's blocks into memory, one host read per run of consecutive blocks of a drive;
    /// a short last block is padded with zeros (alike on both sides).</summary>
    public void ReadChunk(IDiskHost host)
    {
        ulong n = _chunkCount;
        byte* data = _data.Ensure(_chunkBlocks * BlockSize);
        ulong* list = _list.Pointer;
        for (ulong i = 0; i < n;)
        {
            if (!_layout.TryLocate(list[i], out int drive, out ulong block))
                throw new InvalidOperationException($"union block {list[i]} is no block of a drive");
            var d = _layout.Drive(drive);
            ulong j = i + 1;
            while (j < n && list[j] == list[j - 1] + 1 && block + (j - i) < d.Blocks) j++;
            ulong bytes = (j - i - 1) * BlockSize + (ulong)d.BlockLength(block + (j - i - 1));
            var into = new Span<byte>(data + i * BlockSize, checked((int)((j - i) * BlockSize)));
            into[(int)bytes..].Clear();
            host.Read(drive, block * d.Granularity, into[..(int)bytes]);
            i = j;
        }
    }

    /// <summary>Hashes the chunk's blocks (read by <see cref="ReadChunk"/>) on every core; returns them in union order.</summary>
    public ReadOnlySpan<ulong> Hash(PageHasher hasher)
    {
        ulong n = _chunkCount;
        ulong* hashes = _hashes.Ensure(_chunkBlocks);
        long k = hasher.HashPages(_data.Pointer, n, null, hashes);
        if ((ulong)k != n) throw new InvalidOperationException($"hashed {k} disk blocks, the chunk has {n}");
        return new ReadOnlySpan<ulong>(hashes, checked((int)n));
    }

    /// <summary>Compares the chunk's hashes with the peer's (union order) or, with all, takes every block of the
    /// chunk (a checkpoint); returns the chunk's divergent blocks.</summary>
    public ulong Compare(ReadOnlySpan<ulong> peerHashes, bool all = false)
    {
        ulong n = _chunkCount;
        if (!all && (ulong)peerHashes.Length != n)
            throw new SyncProtocolException($"the peer sent {peerHashes.Length} disk block hashes, the chunk has {n}");
        ulong* mine = _hashes.Pointer;
        ulong* divergent = _divergent.Ensure(_chunkBlocks);
        ulong k = 0;
        for (ulong i = 0; i < n; i++)
            if (all || mine[i] != peerHashes[(int)i]) divergent[k++] = i;
        _divergentBlocks = k;
        return k;
    }

    /// <summary>The chunk's i-th divergent block's global number (what the primary sends with <see cref="DivergentData"/>).</summary>
    public ulong DivergentBlock(ulong i) => _list.Pointer[DivergentIndex(i)];

    /// <summary>The chunk's i-th divergent block's 4 KiB, as read.</summary>
    public ReadOnlySpan<byte> DivergentData(ulong i) => new(_data.Pointer + DivergentIndex(i) * BlockSize, BlockSize);

    private ulong DivergentIndex(ulong i) =>
        i < _divergentBlocks ? _divergent.Pointer[i] : throw new ArgumentOutOfRangeException(nameof(i));

    /// <summary>The sync completed: every pending block is alike on both replicas now.</summary>
    public void Completed() => _pending.Clear(Math.Max(_layout.TotalWords, 1));

    /// <summary>Gives the chunk buffers back (after a full sync: syncs that need little then hold little).</summary>
    public void ReleaseChunkMemory()
    {
        _list.Release(); _data.Release(); _hashes.Release(); _divergent.Release(); _peer.Release();
    }

    private static ulong PopCount(ulong* words, ulong count)
    {
        ulong n = 0;
        for (ulong w = 0; w < count; w++) n += (ulong)BitOperations.PopCount(words[w]);
        return n;
    }

    public void Dispose()
    {
        _pending.Dispose(); _union.Dispose(); _list.Dispose(); _data.Dispose(); _hashes.Dispose(); _divergent.Dispose(); _peer.Dispose();
    }
}
