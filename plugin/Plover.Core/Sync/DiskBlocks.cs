using System.Numerics;
using Plover.Hashing;

namespace Plover.Sync;

/// <summary>
/// The disk part of one replica's sync (issue 15 item 3), without the wire: take the drives' dirty blocks at the
/// cut, OR in the peer's, read the union's blocks into memory, hash them with the RAM's page hasher, and compare with
/// the peer's hashes; the divergent blocks are what the primary sends and the backup stages (<see cref="DiskStaging"/>).
///
/// Taking clears QEMU's bitmap, so the dirt taken is kept here (pending) until the sync completes: after an abort the
/// next sync covers it again, as RAM's uncleared bitmaps do. The union's blocks are read with the VM stopped, once:
/// the copy is the primary's snapshot too (an early resume loses nothing) and is hashed off the main thread.
/// Block order is global block order (<see cref="DiskLayout"/>) on both replicas, so hashes line up by index.
/// </summary>
public sealed unsafe class DiskBlocks : IDisposable
{
    private const int BlockSize = GuestRamBlock.PageSize;
    private readonly DiskLayout _layout;
    private readonly NativeBuffer<ulong> _pending = new();   // taken, not yet covered by a completed sync
    private readonly NativeBuffer<ulong> _union = new();
    private readonly NativeBuffer<ulong> _list = new();      // global numbers of the union's blocks, ascending
    private readonly NativeBuffer<byte> _data = new();       // the union's blocks in list order, each padded to 4 KiB
    private readonly NativeBuffer<ulong> _hashes = new();
    private readonly NativeBuffer<ulong> _divergent = new(); // union indices whose hashes differ
    private readonly NativeBuffer<ulong> _peer = new();      // the peer's bitmap, then its hashes, as received
    private ulong _unionBlocks, _divergentBlocks;

    public DiskBlocks(DiskLayout layout)
    {
        _layout = layout;
        _pending.Ensure(Math.Max(layout.TotalWords, 1));
        _pending.Clear(Math.Max(layout.TotalWords, 1));
    }

    public DiskLayout Layout => _layout;
    public ulong UnionBlocks => _unionBlocks;
    public ulong DivergentBlocks => _divergentBlocks;

    /// <summary>This side's dirty blocks (the pending bitmap), as sent to the peer.</summary>
    public ReadOnlySpan<ulong> LocalBitmap => new(_pending.Pointer, checked((int)_layout.TotalWords));

    /// <summary>The union blocks' hashes (after <see cref="Hash"/>), in union order.</summary>
    public ReadOnlySpan<ulong> Hashes => new(_hashes.Pointer, checked((int)_unionBlocks));

    /// <summary>A reused buffer of count words for what the peer sends (its bitmap, then its hashes): nothing is
    /// allocated per sync.</summary>
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

    /// <summary>ORs the peer's bitmap into the union; returns the union's block count. A bit past a drive's last block
    /// is refused (the peer's layout was checked, its bits are not trusted).</summary>
    public ulong OrPeer(ReadOnlySpan<ulong> peer)
    {
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
        ulong n = PopCount(union, _layout.TotalWords);
        ulong* list = _list.Ensure(Math.Max(n, 1));
        ulong k = 0;
        for (ulong w = 0; w < _layout.TotalWords; w++)
            for (ulong bits = union[w]; bits != 0; bits &= bits - 1)
                list[k++] = w * 64 + (ulong)BitOperations.TrailingZeroCount(bits);
        _unionBlocks = n;
        return n;
    }

    /// <summary>MAIN: reads the union's blocks into memory, one host read per run of consecutive blocks of a drive; a
    /// short last block is padded with zeros (alike on both sides).</summary>
    public void ReadUnion(IDiskHost host)
    {
        ulong n = _unionBlocks;
        byte* data = _data.Ensure(Math.Max(n, 1) * BlockSize);
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

    /// <summary>Hashes the union's blocks (read by <see cref="ReadUnion"/>) on every core; returns them in union order.</summary>
    public ReadOnlySpan<ulong> Hash(PageHasher hasher)
    {
        ulong n = _unionBlocks;
        ulong* hashes = _hashes.Ensure(Math.Max(n, 1));
        long k = hasher.HashPages(_data.Pointer, n, null, hashes);
        if ((ulong)k != n) throw new InvalidOperationException($"hashed {k} disk blocks, the union has {n}");
        return new ReadOnlySpan<ulong>(hashes, checked((int)n));
    }

    /// <summary>Compares this side's hashes with the peer's (union order) or, with all, takes every union block (a
    /// checkpoint); returns the divergent blocks' count.</summary>
    public ulong Compare(ReadOnlySpan<ulong> peerHashes, bool all = false)
    {
        ulong n = _unionBlocks;
        if (!all && (ulong)peerHashes.Length != n)
            throw new SyncProtocolException($"the peer sent {peerHashes.Length} disk block hashes, the union has {n}");
        ulong* mine = _hashes.Pointer;
        ulong* divergent = _divergent.Ensure(Math.Max(n, 1));
        ulong k = 0;
        for (ulong i = 0; i < n; i++)
            if (all || mine[i] != peerHashes[(int)i]) divergent[k++] = i;
        _divergentBlocks = k;
        return k;
    }

    /// <summary>The i-th divergent block's global number (what the primary sends with <see cref="DivergentData"/>).</summary>
    public ulong DivergentBlock(ulong i) => _list.Pointer[DivergentIndex(i)];

    /// <summary>The i-th divergent block's 4 KiB, as read at the cut.</summary>
    public ReadOnlySpan<byte> DivergentData(ulong i) => new(_data.Pointer + DivergentIndex(i) * BlockSize, BlockSize);

    private ulong DivergentIndex(ulong i) =>
        i < _divergentBlocks ? _divergent.Pointer[i] : throw new ArgumentOutOfRangeException(nameof(i));

    /// <summary>The sync completed: every pending block is alike on both replicas now.</summary>
    public void Completed() => _pending.Clear(Math.Max(_layout.TotalWords, 1));

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
