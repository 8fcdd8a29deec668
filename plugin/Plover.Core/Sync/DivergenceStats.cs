using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Plover.Sync;

/// <summary>How many bytes differ in one divergent page, in five buckets: 1-8, 9-64, 65-512, 513-4095, 4096 (all).</summary>
[InlineArray(Buckets)]
public struct DivergenceHistogram
{
    public const int Buckets = 5;
    private ulong _element;

    /// <summary>Bucket labels, as the admin command and the demo print them.</summary>
    public static readonly string[] Labels = ["1-8", "9-64", "65-512", "513-4095", "4096"];

    /// <summary>The bucket of a page in which bytes (1..4096) differ.</summary>
    public static int Bucket(int bytes) => bytes <= 8 ? 0 : bytes <= 64 ? 1 : bytes <= 512 ? 2 : bytes < 4096 ? 3 : 4;

    public readonly ulong Total
    {
        get
        {
            ulong n = 0;
            foreach (ulong v in this) n += v;
            return n;
        }
    }

    public void Add(in DivergenceHistogram other)
    {
        for (int i = 0; i < Buckets; i++) this[i] += other[i];
    }
}

/// <summary>What one sync's divergent pages looked like on the backup (byte for byte, before it applied them).</summary>
public struct DivergenceSample
{
    /// <summary>Divergent pages compared (every page the primary sent in replicate mode).</summary>
    public ulong Pages;
    /// <summary>Bytes that differed, over all of them.</summary>
    public ulong Bytes;
    /// <summary>Distinct 64-byte blocks that differed, over all of them (whatever the sub-block size on the wire).</summary>
    public ulong Blocks64;
    /// <summary>Pages by bytes differing.</summary>
    public DivergenceHistogram Histogram;
    /// <summary>Pages sent that did not differ at all (a hash collision of the page hash's sub-blocks cannot make
    /// this; a primary that sends a page the backup already holds does).</summary>
    public ulong Unchanged;
    /// <summary>Of this sync's divergent pages, those that diverged in at least half of the last
    /// <see cref="DivergenceStats.Window"/> recorded syncs (this one included).</summary>
    public ulong Recurring;

    public readonly double MeanBlocks64 => Pages == 0 ? 0 : (double)Blocks64 / Pages;

    /// <summary>Adds one compared page.</summary>
    public void Add(int bytes, int blocks64)
    {
        if (bytes == 0) { Unchanged++; return; }
        Pages++;
        Bytes += (ulong)bytes;
        Blocks64 += (ulong)blocks64;
        Histogram[DivergenceHistogram.Bucket(bytes)]++;
    }

    public void Add(in DivergenceSample o)
    {
        Pages += o.Pages; Bytes += o.Bytes; Blocks64 += o.Blocks64; Unchanged += o.Unchanged; Recurring += o.Recurring;
        Histogram.Add(o.Histogram);
    }
}

/// <summary>
/// Divergence explained (issue 12): the backup, when it applies a divergent page, still holds its own version (in
/// guest RAM) and the primary's (staged), and compares them. Per sync the figures go into
/// <see cref="SyncStats.Divergence"/>; here they add up over every ordinary sync (full syncs, which compare a
/// joining backup's stale RAM, are left out), together with where the divergent pages are (1 MiB regions of each
/// RAM block) and how often the same page diverges (a history of the last <see cref="Window"/> syncs per page).
/// Memory: one counter per MiB of guest RAM and 8 bytes per guest page (0.2% of guest RAM), allocated at the
/// first sync with divergent pages. Written by the engine thread once per sync, after the ack (the VM runs
/// again); read by any thread; nothing is allocated per page.
/// </summary>
public sealed unsafe class DivergenceStats : IDisposable
{
    /// <summary>Syncs in the per-page history: a page recurs if it diverged in at least Window / 2 of them.</summary>
    public const int Window = 32;
    public const int RegionBytes = 1 << 20;
    private const ulong RegionPages = RegionBytes / GuestRamBlock.PageSize;

    private readonly Lock _lock = new();
    private SyncLayout? _layout;
    private ulong[] _regionBase = [];                        // first region of each block
    private readonly NativeBuffer<ulong> _regions = new();   // divergent pages per region
    private readonly NativeBuffer<PageHistory> _history = new();
    private ulong _historyPages;
    private uint _sequence;                                  // syncs recorded (the history's clock)
    private DivergenceSample _total;
    private ulong _syncs, _fullSyncsSkipped;
    private DivergenceSample _last;
    private ulong _lastEpoch;

    private struct PageHistory
    {
        public uint Mask;   // bit i: diverged i syncs before Last
        public uint Last;   // the sequence number of its last divergence
    }

    /// <summary>Records one completed sync on the backup: its figures (already in stats.Divergence) and the pages
    /// it applied (global numbers, ascending). Sets stats.Divergence.Recurring.</summary>
    internal void Record(SyncLayout layout, SyncStats stats, ulong* pages, ulong count)
    {
        lock (_lock)
        {
            if (stats.FullSync)
            {
                _fullSyncsSkipped++;
                return;
            }
            Bind(layout);
            _sequence++;
            _syncs++;
            ulong recurring = 0;
            if (count > 0)
            {
                EnsureTables();
                PageHistory* history = _history.Pointer;
                ulong* regions = _regions.Pointer;
                for (ulong i = 0; i < count; i++)
                {
                    ulong g = pages[i];
                    regions[RegionOf(g)]++;
                    ref PageHistory h = ref history[g];
                    uint age = _sequence - h.Last;
                    h.Mask = (h.Last == 0 || age >= Window ? 0 : h.Mask << (int)age) | 1;
                    h.Last = _sequence;
                    if (BitOperations.PopCount(h.Mask) >= RecurringThreshold) recurring++;
                }
            }
            stats.Divergence.Recurring = recurring;
            _total.Add(stats.Divergence);
            _last = stats.Divergence;
            _lastEpoch = stats.Epoch;
        }
    }

    /// <summary>Divergences in the window that make a page recurring: half the window, or half the syncs recorded
    /// while fewer than a window's worth were.</summary>
    private int RecurringThreshold => (int)Math.Max(1, Math.Min(_sequence, Window) / 2);

    private void Bind(SyncLayout layout)
    {
        if (ReferenceEquals(layout, _layout)) return;
        _layout = layout;
        _regionBase = new ulong[layout.BlockCount + 1];
        for (int b = 0; b < layout.BlockCount; b++)
            _regionBase[b + 1] = _regionBase[b] + (layout.Block(b).Pages + RegionPages - 1) / RegionPages;
        _regions.Release();
        _history.Release();
        _historyPages = 0;
    }

    private void EnsureTables()
    {
        var layout = _layout!;
        if (_regions.Capacity < _regionBase[^1] || _regions.Pointer == null)
        {
            _regions.Ensure(Math.Max(1, _regionBase[^1]));
            _regions.Clear(_regions.Capacity);
        }
        ulong pages = layout.TotalWords * 64;
        if (_historyPages != pages)
        {
            _history.Ensure(pages);
            _history.Clear(pages);
            _historyPages = pages;
        }
    }

    private ulong RegionOf(ulong g)
    {
        var layout = _layout!;
        int b = layout.BlockOf(g);
        return _regionBase[b] + (g - layout.PageBase(b)) / RegionPages;
    }

    /// <summary>Forgets everything recorded (a benchmark's or the demo's measuring window).</summary>
    public void Reset()
    {
        lock (_lock)
        {
            _total = default;
            _last = default;
            _lastEpoch = 0;
            _syncs = _fullSyncsSkipped = 0;
            _sequence = 0;
            if (_regions.Pointer != null) _regions.Clear(_regions.Capacity);
            if (_history.Pointer != null) _history.Clear(_historyPages);
        }
    }

    /// <summary>A region of guest RAM: a RAM block and the 1 MiB at OffsetMiB in it.</summary>
    public readonly record struct Region(string Block, ulong OffsetMiB, ulong Pages);

    /// <summary>A page that diverged often lately: its block, byte offset in the block, and in how many of the last
    /// <see cref="Window"/> syncs it diverged.</summary>
    public readonly record struct RecurringPage(string Block, ulong Offset, int Syncs);

    /// <summary>Everything recorded so far (a copy; allocates, for the admin socket and tests).</summary>
    public sealed record Snapshot(ulong Syncs, ulong FullSyncsSkipped, DivergenceSample Total, ulong LastEpoch, DivergenceSample Last,
        Region[] TopRegions, ulong RegionsWithDivergence, int RecurringThreshold, ulong RecurringPages, RecurringPage[] TopRecurring);

    public Snapshot Read(int top = 20)
    {
        lock (_lock)
        {
            var regions = new List<Region>();
            ulong touched = 0;
            var recurring = new List<RecurringPage>();
            ulong recurringPages = 0;
            int threshold = RecurringThreshold;
            if (_layout is { } layout && _regions.Pointer != null)
            {
                ulong* counts = _regions.Pointer;
                for (int b = 0; b < layout.BlockCount; b++)
                    for (ulong r = _regionBase[b]; r < _regionBase[b + 1]; r++)
                    {
                        if (counts[r] == 0) continue;
                        touched++;
                        regions.Add(new Region(layout.Block(b).Name, r - _regionBase[b], counts[r]));
                    }
                PageHistory* history = _history.Pointer;
                for (int b = 0; b < layout.BlockCount && history != null; b++)
                {
                    ulong pageBase = layout.PageBase(b);
                    for (ulong p = 0; p < layout.Block(b).Pages; p++)
                    {
                        var h = history[pageBase + p];
                        if (h.Last == 0) continue;
                        uint age = _sequence - h.Last;
                        int seen = age >= Window ? 0 : BitOperations.PopCount(h.Mask << (int)age);
                        if (seen < threshold || seen == 0) continue;
                        recurringPages++;
                        recurring.Add(new RecurringPage(layout.Block(b).Name, p * GuestRamBlock.PageSize, seen));
                    }
                }
            }
            var topRegions = regions.OrderByDescending(r => r.Pages).ThenBy(r => r.Block, StringComparer.Ordinal).ThenBy(r => r.OffsetMiB).Take(top).ToArray();
            var topRecurring = recurring.OrderByDescending(r => r.Syncs).ThenBy(r => r.Block, StringComparer.Ordinal).ThenBy(r => r.Offset).Take(top).ToArray();
            return new Snapshot(_syncs, _fullSyncsSkipped, _total, _lastEpoch, _last, topRegions, touched, threshold, recurringPages, topRecurring);
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _regions.Dispose();
            _history.Dispose();
        }
    }

    // ------------------------------------------------------------------ the comparison (apply path)

    /// <summary>Bytes that differ between two 64-byte blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int DiffBytes64(byte* a, byte* b)
    {
        if (Vector512.IsHardwareAccelerated) return DiffBytes64Vector512(a, b);
        if (Vector256.IsHardwareAccelerated) return DiffBytes64Vector256(a, b);
        return DiffBytes64Vector128(a, b);
    }

    /// <summary>The AVX-512 form (elsewhere the runtime emulates it: the tests run it on every machine).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int DiffBytes64Vector512(byte* a, byte* b)
    {
        ulong equal = Vector512.Equals(Vector512.Load(a), Vector512.Load(b)).ExtractMostSignificantBits();
        return 64 - BitOperations.PopCount(equal);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int DiffBytes64Vector256(byte* a, byte* b)
    {
        uint e0 = Vector256.Equals(Vector256.Load(a), Vector256.Load(b)).ExtractMostSignificantBits();
        uint e1 = Vector256.Equals(Vector256.Load(a + 32), Vector256.Load(b + 32)).ExtractMostSignificantBits();
        return 64 - BitOperations.PopCount(e0) - BitOperations.PopCount(e1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int DiffBytes64Vector128(byte* a, byte* b)
    {
        int equal = 0;
        for (int i = 0; i < 64; i += 16)
            equal += BitOperations.PopCount(Vector128.Equals(Vector128.Load(a + i), Vector128.Load(b + i)).ExtractMostSignificantBits());
        return 64 - equal;
    }

    /// <summary>Compares length bytes (a multiple of 64) of the backup's own copy with the primary's: adds the
    /// differing bytes and 64-byte blocks to bytes and blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Compare(byte* own, byte* theirs, int length, ref int bytes, ref int blocks)
    {
        for (int o = 0; o < length; o += 64)
        {
            int d = DiffBytes64(own + o, theirs + o);
            bytes += d;
            if (d != 0) blocks++;
        }
    }
}
