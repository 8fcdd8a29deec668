using System.Numerics;

namespace Plover.Sync;

/// <summary>
/// The primary's copy of a set of pages (a sync's union, or its divergent pages), taken at the cut so that its guest
/// can resume before the sync is over (<see cref="SyncOptions.EarlyResume"/>): what the sync still reads (hashes,
/// sub-blocks, transfer) comes from this copy, not from the guest RAM that the running guest changes. Pages are
/// stored in page order; page g's slot is its rank among the set's bits (a prefix count per bitmap word plus a
/// popcount). Buffers are kept across syncs.
/// </summary>
internal sealed unsafe class PageSnapshot : IPageSource, IDisposable
{
    private readonly NativeBuffer<byte> _data = new();
    private readonly NativeBuffer<ulong> _rank = new();    // pages of the set before bitmap word w
    private readonly NativeBuffer<ulong> _list = new();    // the set's global page numbers, in order
    private readonly NativeBuffer<ulong> _allPages = new(); // Pages set bits: the page hasher's bitmap over Data
    private ulong* _set;

    /// <summary>Pages held, at Data in page order.</summary>
    public ulong Pages { get; private set; }
    public byte* Data => _data.Pointer;
    /// <summary>A bitmap with the first <see cref="Pages"/> bits set.</summary>
    public ulong* AllPages => _allPages.Pointer;
    /// <summary>Bytes held between syncs.</summary>
    public ulong CapacityBytes => _data.Capacity;

    /// <summary>Copies every page of set (a global bitmap over layout, count bits set) from guest RAM, on every core.
    /// The bitmap must stay unchanged while this snapshot is read.</summary>
    public void Take(SyncLayout layout, ulong* set, ulong count, PageWorkers workers)
    {
        ulong words = layout.TotalWords;
        ulong* rank = _rank.Ensure(words);
        ulong* list = _list.Ensure(Math.Max(count, 1));
        ulong n = 0;
        for (ulong w = 0; w < words; w++)
        {
            rank[w] = n;
            ulong bits = set[w];
            if (n + (ulong)BitOperations.PopCount(bits) > count)
                throw new InvalidOperationException($"the set has more than {count} pages");
            for (; bits != 0; bits &= bits - 1) list[n++] = w * 64 + (ulong)BitOperations.TrailingZeroCount(bits);
        }
        if (n != count) throw new InvalidOperationException($"the set has {n} pages, not {count}");
        ulong allWords = Math.Max((count + 63) / 64, 1);
        ulong* all = _allPages.Ensure(allWords);
        new Span<ulong>(all, checked((int)allWords)).Fill(ulong.MaxValue);
        if (count % 64 != 0) all[allWords - 1] = (1UL << (int)(count % 64)) - 1;
        if (count == 0) all[0] = 0;
        // grown to a power of two of pages: a buffer grown to each new largest count would be fresh memory each time,
        // and its first-touch faults cost more than the copy (2,500 pages: 8.1 ms against 1.9 in a kept buffer)
        byte* data = _data.Ensure(BitOperations.RoundUpToPowerOf2(Math.Max(count, 1)) * GuestRamBlock.PageSize);
        workers.Copy(layout, list, (long)count, data);
        _set = set;
        Pages = count;
    }

    public byte* PageAddress(ulong g)
    {
        ulong w = g / 64;
        ulong below = _set[w] & ((1UL << (int)(g % 64)) - 1);
        return _data.Pointer + (_rank.Pointer[w] + (ulong)BitOperations.PopCount(below)) * GuestRamBlock.PageSize;
    }

    public void Dispose()
    {
        _data.Dispose(); _rank.Dispose(); _list.Dispose(); _allPages.Dispose();
    }
}
