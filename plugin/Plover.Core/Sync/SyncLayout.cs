using System.Text;
using Plover.Hashing;

namespace Plover.Sync;

/// <summary>
/// The global page numbering of a set of RAM blocks: block b's page p is PageBase[b] + p, where every block
/// starts on a 64-page boundary, so the global bitmap is simply the blocks' bitmap words back to back and each
/// block's part can be handed to the page hasher as a pointer. Both replicas must have the same layout
/// (<see cref="Hash"/> over names and lengths is compared at every sync).
/// </summary>
public sealed unsafe class SyncLayout : IPageSource
{
    private readonly GuestRamBlock[] _blocks;
    private readonly ulong[] _wordBase;

    public SyncLayout(IReadOnlyList<GuestRamBlock> blocks)
    {
        if (blocks.Count == 0) throw new ArgumentException("the guest has no RAM blocks", nameof(blocks));
        _blocks = blocks.ToArray();
        _wordBase = new ulong[_blocks.Length + 1];
        var description = new StringBuilder();
        for (int b = 0; b < _blocks.Length; b++)
        {
            var block = _blocks[b];
            if (block.Length == 0 || block.Length % GuestRamBlock.PageSize != 0)
                throw new ArgumentException($"RAM block '{block.Name}' has length {block.Length}, not a positive multiple of {GuestRamBlock.PageSize}");
            if (block.Host == null || block.Dirty == null)
                throw new ArgumentException($"RAM block '{block.Name}' has no host memory or no dirty bitmap");
            _wordBase[b + 1] = _wordBase[b] + block.Words;
            description.Append(block.Name).Append('\0').Append(block.Length).Append('\0');
        }
        Hash = CityHash.Hash64(Encoding.UTF8.GetBytes(description.ToString()));
    }

    public int BlockCount => _blocks.Length;
    public GuestRamBlock Block(int b) => _blocks[b];
    /// <summary>Words of the global bitmap.</summary>
    public ulong TotalWords => _wordBase[^1];
    /// <summary>First bitmap word of block b.</summary>
    public ulong WordBase(int b) => _wordBase[b];
    public ulong PageBase(int b) => _wordBase[b] * 64;
    public ulong Hash { get; }

    public ulong TotalPages
    {
        get
        {
            ulong n = 0;
            foreach (var b in _blocks) n += b.Pages;
            return n;
        }
    }

    /// <summary>The block holding global page g (g must be a valid page; binary search).</summary>
    public int BlockOf(ulong g)
    {
        ulong word = g / 64;
        int lo = 0, hi = _blocks.Length - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (_wordBase[mid] <= word) lo = mid; else hi = mid - 1;
        }
        return lo;
    }

    /// <summary>True if global page g names a real page (not past a block's end, nor in its padding bits).</summary>
    public bool IsValidPage(ulong g)
    {
        if (g / 64 >= TotalWords) return false;
        int b = BlockOf(g);
        return g - PageBase(b) < _blocks[b].Pages;
    }

    /// <summary>Host address of global page g.</summary>
    public byte* PageAddress(ulong g)
    {
        int b = BlockOf(g);
        return _blocks[b].Host + (g - PageBase(b)) * GuestRamBlock.PageSize;
    }

    /// <summary>Mask of the bits of global bitmap word w that name real pages.</summary>
    public ulong ValidMask(ulong w)
    {
        int b = BlockOf(w * 64);
        ulong last = _wordBase[b + 1] - 1;
        ulong pages = _blocks[b].Pages;
        return w == last && pages % 64 != 0 ? (1UL << (int)(pages % 64)) - 1 : ulong.MaxValue;
    }
}
