using System.Numerics;

namespace Plover.Sync;

/// <summary>
/// The primary's copy of a sync's union pages, taken at the cut so that its guest can resume before the sync is
/// over (<see cref="SyncOptions.EarlyResume"/>): hashing, sub-blocks and transfer then read this copy, not the guest
/// RAM that the running guest changes. Pages are stored in union order; page g's slot is its rank among the
/// union's set bits (a prefix count per bitmap word plus a popcount). Buffers are kept across syncs.
/// </summary>
internal sealed unsafe class UnionSnapshot : IPageSource, IDisposable
{
    private readonly NativeBuffer<byte> _data = new();
    private readonly NativeBuffer<ulong> _rank = new();    // union pages before bitmap word w
    private readonly NativeBuffer<ulong> _list = new();    // the union's global page numbers, in order
    private readonly NativeBuffer<ulong> _allPages = new(); // Pages set bits: the page hasher's bitmap over Data
    private ulong* _union;

    /// <summary>Pages held (the union's size), at Data in union order.</summary>
    public ulong Pages { get; private set; }
    public byte* Data => _data.Pointer;
    /// <summary>A bitmap with the first <see cref="Pages"/> bits set.</summary>
    public ulong* AllPages => _allPages.Pointer;
    /// <summary>Bytes held between syncs.</summary>
    public ulong CapacityBytes => _data.Capacity;

    /// <summary>Copies every page of union (a global bitmap over layout, unionPages bits set) from guest RAM, on every
    /// core. The union must stay unchanged while this snapshot is read.</summary>
    public void Take(SyncLayout layout, ulong* union, ulong unionPages, PageWorkers workers)
    {
        ulong words = layout.TotalWords;
        ulong* rank = _rank.Ensure(words);
        ulong* list = _list.Ensure(Math.Max(unionPages, 1));
        ulong n = 0;
        for (ulong w = 0; w < words; w++)
        {
            rank[w] = n;
            ulong bits = union[w];
            if (n + (ulong)BitOperations.PopCount(bits) > unionPages)
                throw new InvalidOperationException($"the union has more than {unionPages} pages");
            for (; bits != 0; bits &= bits - 1) list[n++] = w * 64 + (ulong)BitOperations.TrailingZeroCount(bits);
        }
        if (n != unionPages) throw new InvalidOperationException($"the union has {n} pages, not {unionPages}");
        ulong allWords = Math.Max((unionPages + 63) / 64, 1);
        ulong* all = _allPages.Ensure(allWords);
        new Span<ulong>(all, checked((int)allWords)).Fill(ulong.MaxValue);
        if (unionPages % 64 != 0) all[allWords - 1] = (1UL << (int)(unionPages % 64)) - 1;
        if (unionPages == 0) all[0] = 0;
        byte* data = _data.Ensure(Math.Max(unionPages, 1) * GuestRamBlock.PageSize);
        workers.Copy(layout, list, (long)unionPages, data);
        _union = union;
        Pages = unionPages;
    }

    public byte* PageAddress(ulong g)
    {
        ulong w = g / 64;
        ulong below = _union[w] & ((1UL << (int)(g % 64)) - 1);
        return _data.Pointer + (_rank.Pointer[w] + (ulong)BitOperations.PopCount(below)) * GuestRamBlock.PageSize;
    }

    public void Dispose()
    {
        _data.Dispose(); _rank.Dispose(); _list.Dispose(); _allPages.Dispose();
    }
}
