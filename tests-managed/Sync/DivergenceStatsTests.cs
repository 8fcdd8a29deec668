using Plover.Sync;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>
/// Divergence explained (issue 12 item 1): the backup compares each divergent page with its own copy before it
/// applies the primary's, and records bytes per page (histogram), 64-byte blocks, 1 MiB regions and recurrence.
/// Crafted divergences with known answers, in whole-page mode and at several sub-block sizes.
/// </summary>
public unsafe class DivergenceStatsTests
{
    private static readonly (string, ulong)[] Layout = [("pc.ram", 8UL << 20), ("vga.vram", 2UL << 20)];

    private static SyncOptions Options(int subBlockBytes) => new() { SubBlockBytes = subBlockBytes, Log = _ => { } };

    /// <summary>Makes page (block, page) differ in exactly the given byte offsets (the primary gets new values, the
    /// backup keeps its old ones, so every listed byte differs), both sides logged dirty.</summary>
    private static void Diverge(SyncPair pair, int block, ulong page, params int[] offsets)
    {
        var p = pair.PrimaryMemory.Page(block, page);
        foreach (int o in offsets) p[o] ^= 0xA5;
        pair.PrimaryMemory.Touch(block, page);
        pair.BackupMemory.Touch(block, page);
    }

    private static int[] Range(int start, int count) => Enumerable.Range(start, count).ToArray();

    public static TheoryData<int> SubBlockSizes() => new() { 0, 64, 128, 256, 1024 };

    [Theory]
    [MemberData(nameof(SubBlockSizes))]
    public void Histogram_BytesAndBlocks_OfCraftedDivergences(int subBlockBytes)
    {
        using var pair = new SyncPair(Layout, Options(subBlockBytes), Options(subBlockBytes));
        // (bytes differing, 64-byte blocks differing) for each crafted page
        var cases = new (int[] Offsets, int Bytes, int Blocks, int Bucket)[]
        {
            ([4095], 1, 1, 0),                         // the last byte of the page
            ([63, 64], 2, 2, 0),                       // both sides of a block edge
            (Range(0, 8), 8, 1, 0),
            (Range(60, 9), 9, 2, 1),                   // 9 bytes across an edge
            ([0, 64, 128, 192, 256, 320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960, 1024, 1088, 1152, 1216,
              1280, 1344, 1408, 1472, 1536, 1600, 1664, 1728, 1792, 1856, 1920, 1984, 2048, 2112, 2176, 2240, 2304,
              2368, 2432, 2496, 2560, 2624, 2688, 2752, 2816, 2880, 2944, 3008, 3072, 3136, 3200, 3264, 3328, 3392,
              3456, 3520, 3584, 3648, 3712, 3776, 3840, 3904, 3968, 4032], 64, 64, 1),   // one byte in every block
            (Range(100, 65), 65, 2, 2),                 // bytes 100..164: blocks 1 and 2
            (Range(1024, 512), 512, 8, 2),
            (Range(0, 513), 513, 9, 3),
            (Range(1, 4095), 4095, 64, 3),
            (Range(0, 4096), 4096, 64, 4),
        };
        for (int i = 0; i < cases.Length; i++) Diverge(pair, 0, (ulong)(10 + 7 * i), cases[i].Offsets);
        Diverge(pair, 1, 3, 17);                       // and one in the second block
        pair.PrimaryMemory.Write(0, 200, 8, 0x1234UL); // a dirty page written alike on both: not divergent
        pair.BackupMemory.Write(0, 200, 8, 0x1234UL);

        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
        var d = b.Divergence;
        Assert.Equal((ulong)cases.Length + 1, d.Pages);
        Assert.Equal((ulong)cases.Sum(c => c.Bytes) + 1, d.Bytes);
        Assert.Equal((ulong)cases.Sum(c => c.Blocks) + 1, d.Blocks64);
        for (int bucket = 0; bucket < DivergenceHistogram.Buckets; bucket++)
            Assert.Equal((ulong)cases.Count(c => c.Bucket == bucket) + (bucket == 0 ? 1UL : 0), d.Histogram[bucket]);
        Assert.Equal(0UL, d.Unchanged);
        Assert.Equal(subBlockBytes, b.SubBlockBytes);
        Assert.Equal(0UL, p.Divergence.Histogram.Total);   // only the backup has both copies
        Assert.Equal(0UL, p.Divergence.Pages);

        var totals = pair.Backup.Divergence.Read();
        Assert.Equal(1UL, totals.Syncs);
        Assert.Equal(d.Bytes, totals.Total.Bytes);
        Assert.Equal(d.Histogram[4], totals.Total.Histogram[4]);
        Assert.Equal(0UL, pair.Primary.Divergence.Read().Total.Pages);
    }

    [Fact]
    public void Regions_TopTwenty_ByCount_PerRamBlock()
    {
        using var pair = new SyncPair([("pc.ram", 32UL << 20), ("vga.vram", 4UL << 20)], Options(64), Options(64));
        // region r of pc.ram (1 MiB = 256 pages) gets r + 1 divergent pages for r < 24; vga.vram's region 2 gets 30
        for (int r = 0; r < 24; r++)
            for (int k = 0; k <= r; k++) Diverge(pair, 0, (ulong)(r * 256 + k * 7), 100);
        for (int k = 0; k < 30; k++) Diverge(pair, 1, (ulong)(2 * 256 + k), 5);
        var (_, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);

        var s = pair.Backup.Divergence.Read();
        Assert.Equal(25UL, s.RegionsWithDivergence);
        Assert.Equal(20, s.TopRegions.Length);
        Assert.Equal(new DivergenceStats.Region("vga.vram", 2, 30), s.TopRegions[0]);
        for (int i = 1; i < 20; i++)
            Assert.Equal(new DivergenceStats.Region("pc.ram", (ulong)(24 - i), (ulong)(25 - i)), s.TopRegions[i]);
        Assert.Equal(3, pair.Backup.Divergence.Read(top: 3).TopRegions.Length);
    }

    [Fact]
    public void RecurringPages_AreThoseThatDivergeInHalfTheRecentSyncs()
    {
        using var pair = new SyncPair(Layout, Options(64), Options(64));
        ulong[] recurring = new ulong[6];
        for (ulong e = 1; e <= 6; e++)
        {
            Diverge(pair, 0, 5, 9);                    // every sync
            if (e % 2 == 0) Diverge(pair, 0, 6, 9);    // every other sync
            if (e == 1) Diverge(pair, 0, 7, 9);        // once
            var (_, b) = pair.Sync(e);
            Assert.Equal(SyncOutcome.Completed, b.Outcome);
            recurring[e - 1] = b.Divergence.Recurring;
        }
        var s = pair.Backup.Divergence.Read();
        Assert.Equal(6UL, s.Syncs);
        Assert.Equal(3, s.RecurringThreshold);   // half of the 6 syncs so far
        Assert.Equal(2UL, s.RecurringPages);
        Assert.Equal(new DivergenceStats.RecurringPage("pc.ram", 5 * 4096, 6), s.TopRecurring[0]);
        Assert.Equal(new DivergenceStats.RecurringPage("pc.ram", 6 * 4096, 3), s.TopRecurring[1]);
        Assert.Equal(2UL, recurring[5]);          // in the last sync both pages counted as recurring
        Assert.Equal((ulong)(6 + 3 + 1), s.Total.Pages);

        // a window of DivergenceStats.Window syncs: a page that stops diverging ages out of it
        for (ulong e = 7; e < 7 + DivergenceStats.Window; e++)
        {
            if (e % 2 == 0) Diverge(pair, 0, 6, 9);
            Assert.Equal(SyncOutcome.Completed, pair.Sync(e).Backup.Outcome);
        }
        s = pair.Backup.Divergence.Read();
        Assert.Equal(DivergenceStats.Window / 2, s.RecurringThreshold);
        Assert.Equal(1UL, s.RecurringPages);
        Assert.Equal(6UL * 4096, s.TopRecurring[0].Offset);
        Assert.Equal(DivergenceStats.Window / 2, s.TopRecurring[0].Syncs);

        pair.Backup.Divergence.Reset();
        s = pair.Backup.Divergence.Read();
        Assert.Equal(0UL, s.Syncs);
        Assert.Equal(0UL, s.RecurringPages);
        Assert.Empty(s.TopRegions);
    }

    [Fact]
    public void FullSyncs_AreLeftOutOfTheTotals_ButCountedPerSync()
    {
        using var pair = new SyncPair(Layout, Options(64), Options(64));
        pair.BackupMemory.Page(0, 9)[100] ^= 1;   // a stale backup: no dirt logged
        var (_, b) = pair.Sync(1, full: true);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(0, b.SubBlockBytes);          // full syncs send whole pages
        Assert.Equal(1UL, b.Divergence.Pages);
        Assert.Equal(1UL, b.Divergence.Bytes);
        var s = pair.Backup.Divergence.Read();
        Assert.Equal(0UL, s.Syncs);
        Assert.Equal(1UL, s.FullSyncsSkipped);
        Assert.Equal(0UL, s.Total.Pages);
    }

    [Fact]
    public void Checkpoint_RecordsNoDivergence()
    {
        var options = new SyncOptions { Checkpoint = true, Log = _ => { } };
        using var pair = new SyncPair(Layout, options, options);
        Diverge(pair, 0, 4, 1, 2, 3);
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(0, p.SubBlockBytes);
        Assert.Equal(0UL, b.Divergence.Pages);
        Assert.Equal(0UL, pair.Backup.Divergence.Read().Syncs);
    }

    [Fact]
    public void DiffBytes_EveryVectorWidth_MatchesAByteLoop()
    {
        var rng = new Random(12);
        byte* a = stackalloc byte[64];
        byte* b = stackalloc byte[64];
        for (int round = 0; round < 2000; round++)
        {
            rng.NextBytes(new Span<byte>(a, 64));
            new Span<byte>(a, 64).CopyTo(new Span<byte>(b, 64));
            int changes = round % 66;   // 0..65 changes (some may hit the same byte)
            for (int c = 0; c < changes; c++) b[rng.Next(64)] ^= (byte)(1 + rng.Next(255));
            int expected = 0;
            for (int i = 0; i < 64; i++) if (a[i] != b[i]) expected++;
            // the 512-bit form runs on every machine: where AVX-512 is missing the runtime emulates it
            Assert.Equal(expected, DivergenceStats.DiffBytes64Vector512(a, b));
            Assert.Equal(expected, DivergenceStats.DiffBytes64Vector256(a, b));
            Assert.Equal(expected, DivergenceStats.DiffBytes64Vector128(a, b));
            Assert.Equal(expected, DivergenceStats.DiffBytes64(a, b));
        }
    }

    [Fact]
    public void Histogram_BucketEdges()
    {
        Assert.Equal([0, 0, 1, 1, 2, 2, 3, 3, 4], new[] { 1, 8, 9, 64, 65, 512, 513, 4095, 4096 }.Select(DivergenceHistogram.Bucket));
        Assert.Equal(["1-8", "9-64", "65-512", "513-4095", "4096"], DivergenceHistogram.Labels);
    }
}
