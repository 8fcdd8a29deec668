using Plover.Hashing;
using Plover.Sync;
using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Sync;

/// <summary>
/// Send only the bytes that differ (issue 12 item 2): of each divergent page the primary sends the sub-blocks whose
/// hashes differ from the backup's. Whatever the workload and the sub-block size, the replicas end byte-identical,
/// exactly the differing sub-blocks travel, and the backup's apply stays atomic.
/// </summary>
public unsafe class SubBlockTests(ITestOutputHelper output)
{
    private static readonly (string, ulong)[] Layout = [("pc.ram", 16UL << 20), ("vga.vram", (2UL << 20) + 3 * 4096), ("rom", 12 * 1024)];

    /// <summary>Sub-blocks of blockBytes that differ between the replicas, over every page.</summary>
    private static ulong DifferingSubBlocks(SyncPair pair, int blockBytes)
    {
        ulong n = 0;
        var blocks = pair.PrimaryMemory.Blocks;
        for (int b = 0; b < blocks.Count; b++)
            for (ulong page = 0; page < blocks[b].Pages; page++)
            {
                var x = pair.PrimaryMemory.Page(b, page);
                var y = pair.BackupMemory.Page(b, page);
                if (x.SequenceEqual(y)) continue;
                for (int o = 0; o < 4096; o += blockBytes)
                    if (!x.Slice(o, blockBytes).SequenceEqual(y.Slice(o, blockBytes))) n++;
            }
        return n;
    }

    /// <summary>Pages of every awkward shape: every byte different, one byte on either side of a sub-block edge, the
    /// last byte of the page, the first byte, and realistic divergences (SyntheticDivergence).</summary>
    private static void AwkwardPages(SyncPair pair, Random rng, int blockBytes, ulong firstPage)
    {
        void Flip(ulong page, params int[] offsets)
        {
            var p = pair.PrimaryMemory.Page(0, page);
            foreach (int o in offsets) p[o] ^= 0x5A;
            pair.PrimaryMemory.Touch(0, page);
            pair.BackupMemory.Touch(0, page);
        }
        ulong at = firstPage;
        Flip(at++, Enumerable.Range(0, 4096).ToArray());   // every byte
        Flip(at++, blockBytes - 1);                        // last byte of the first sub-block
        Flip(at++, blockBytes);                            // first byte of the second
        Flip(at++, blockBytes - 1, blockBytes);            // both sides of the edge
        Flip(at++, 4095);                                  // last byte of the page
        Flip(at++, 0);
        Flip(at++, 63, 64, 4031, 4032);                    // 64-byte edges, whatever the sub-block size
        for (int i = 0; i < 40; i++, at++)
        {
            SyntheticDivergence.Apply(rng, pair.PrimaryMemory.Page(0, at), pair.BackupMemory.Page(0, at));
            pair.PrimaryMemory.Touch(0, at);
            pair.BackupMemory.Touch(0, at);
        }
    }

    public static TheoryData<int> Sizes() => new() { 64, 128, 256, 512, 1024 };

    [Theory]
    [MemberData(nameof(Sizes))]
    public void RandomWorkloads_LeaveMemoriesIdentical_AndSendExactlyTheDifferingSubBlocks(int blockBytes)
    {
        var options = new SyncOptions { SubBlockBytes = blockBytes, PagesPerFrame = 16, HashesPerFrame = 1000, Log = _ => { } };
        using var pair = new SyncPair(Layout, options, options);
        var work = new Workload(pair, seed: blockBytes);
        var rng = new Random(blockBytes);
        double[] fractions = [0.01, 0.05, 0.2, 0.002, 0.1];
        double[] shares = [0.25, 0.0, 0.5, 1.0, 0.1];
        for (int round = 0; round < fractions.Length; round++)
        {
            ulong epoch = (ulong)round + 1;
            work.Run(fractions[round], shares[round]);
            AwkwardPages(pair, rng, blockBytes, 1000 + (ulong)round * 60);
            ulong expectedBlocks = DifferingSubBlocks(pair, blockBytes);
            ulong ramBefore = pair.BackupVm.RamUpdatedBytes;

            var (p, b) = pair.Sync(epoch);
            output.WriteLine(p.ToString());
            Assert.Equal(SyncOutcome.Completed, p.Outcome);
            Assert.Equal(SyncOutcome.Completed, b.Outcome);
            Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
            Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
            Assert.Equal(blockBytes, p.SubBlockBytes);
            Assert.Equal(blockBytes, b.SubBlockBytes);
            Assert.Equal(expectedBlocks, p.SubBlocks);
            Assert.Equal(expectedBlocks, b.SubBlocks);
            Assert.Equal(expectedBlocks * (ulong)blockBytes, b.PageDataBytes);
            Assert.Equal(p.DivergentPages * 4096, pair.BackupVm.RamUpdatedBytes - ramBefore);   // whole pages reported
            Assert.Equal(p.Wire.Total, b.Wire.Total);
            work.Reset();
        }
    }

    [Fact]
    public void SubBlocks_SendAFractionOfWholePages()
    {
        long Pages(int blockBytes)
        {
            var options = new SyncOptions { SubBlockBytes = blockBytes, Log = _ => { } };
            using var pair = new SyncPair(Layout, options, options);
            new Workload(pair, seed: 5).Run(0.05, 0.5);     // one word differs per divergent page
            var (p, b) = pair.Sync(1);
            Assert.Equal(SyncOutcome.Completed, b.Outcome);
            Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
            return p.Wire.Pages + p.Wire.Hashes + p.Wire.Bitmaps;
        }
        long whole = Pages(0), sub = Pages(64);
        output.WriteLine($"whole pages {whole} B, 64-byte sub-blocks {sub} B");
        Assert.True(sub * 4 < whole, $"sub-blocks {sub} B vs whole pages {whole} B");
    }

    [Fact]
    public void ManyChunks_InLockStep_LeaveMemoriesIdentical()
    {
        var options = new SyncOptions { SubBlockBytes = 64, SubBlockChunkPages = 5, HashesPerFrame = 64 * 2, PagesPerFrame = 3, Log = _ => { } };
        using var pair = new SyncPair(Layout, options, options);
        var rng = new Random(3);
        AwkwardPages(pair, rng, 64, 100);
        new Workload(pair, seed: 8).Run(0.01, 0.7);
        ulong expected = DifferingSubBlocks(pair, 64);
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.True(p.DivergentPages > 20);
        Assert.Equal(expected, b.SubBlocks);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
    }

    /// <summary>The pipelined round at its largest chunk with every sub-block different: the backup's hashes of the next
    /// chunk and the primary's sub-blocks of this one are in flight at once (tens of MiB in all); neither side may
    /// stall on a full socket buffer.</summary>
    [Fact]
    public void LargestChunks_EveryBlockDifferent_TensOfMebibytes_DoNotStall()
    {
        var options = new SyncOptions
        {
            SubBlockBytes = 64, SubBlockChunkPages = SyncProtocol.MaxChunkPages, Timeout = TimeSpan.FromSeconds(20), Log = _ => { },
        };
        using var pair = new SyncPair([("pc.ram", 64UL << 20)], options, options);
        var rng = new Random(12);
        var noise = new byte[4096];
        for (ulong page = 0; page < 12_000; page++)
        {
            rng.NextBytes(noise);
            pair.PrimaryMemory.Write(0, page, 0, noise);
            pair.BackupMemory.Write(0, page, 0, new byte[4096]);
        }
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(12_000UL, p.DivergentPages);
        Assert.True(p.PageDataBytes >= 12_000UL * 4096 * 15 / 16, $"{p.PageDataBytes} bytes of sub-blocks");
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
    }

    [Fact]
    public void ZeroSubBlockBytes_SendsWholePages()
    {
        var options = new SyncOptions { SubBlockBytes = 0, Log = _ => { } };
        using var pair = new SyncPair(Layout, options, options);
        var work = new Workload(pair, seed: 2);
        work.Run(0.02, 0.5);
        int divergent = work.CountDivergent();
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(0, p.SubBlockBytes);
        Assert.Equal(0UL, p.SubBlocks);
        Assert.Equal((ulong)divergent * 4096, p.PageDataBytes);
        Assert.Equal((ulong)divergent * 4096, b.PageDataBytes);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
    }

    [Fact]
    public void OnlyThePrimarysSetting_Counts()
    {
        using var pair = new SyncPair(Layout, new SyncOptions { SubBlockBytes = 256, Log = _ => { } }, new SyncOptions { SubBlockBytes = 0, Log = _ => { } });
        new Workload(pair, seed: 4).Run(0.02, 0.5);
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(256, b.SubBlockBytes);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
    }

    [Fact]
    public void NoDivergentPage_ButAUnion_SendsAnEmptyList()
    {
        using var pair = new SyncPair(Layout);
        pair.PrimaryMemory.Write(0, 3, 0, 7UL);
        pair.BackupMemory.Write(0, 3, 0, 7UL);
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(1UL, p.UnionPages);
        Assert.Equal(0UL, p.DivergentPages);
        Assert.Equal(0UL, b.SubBlocks);
        Assert.Equal(0, p.Wire.Pages);
    }

    [Theory]
    [InlineData(32)]
    [InlineData(48)]
    [InlineData(2048)]
    [InlineData(-64)]
    public void InvalidSubBlockSize_IsRefused(int bytes)
    {
        using var memory = new SyntheticGuestMemory(("pc.ram", 1UL << 20));
        using var main = new DedicatedMainThread("m");
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            new SyncEngine(SyncRole.Primary, memory, new SyntheticVm(memory, main), main, null, new SyncOptions { SubBlockBytes = bytes }));
        Assert.Contains("SubBlockBytes", e.Message);
    }

    [Theory]
    [InlineData(1, 64)]
    [InlineData(2, 64)]
    [InlineData(2, 256)]
    [InlineData(3, 1024)]
    public void PageWorkers_OnEveryThread_EqualsCityHashOfEachSubBlock(int threads, int blockBytes)
    {
        using var memory = new SyntheticGuestMemory(("a", 3UL << 20), ("b", 1UL << 20));
        memory.FillRandom(9);
        var layout = new SyncLayout(memory.Blocks);
        var rng = new Random(threads);
        var pages = Enumerable.Range(0, 700).Select(_ => (ulong)rng.NextInt64(768)).Append(layout.PageBase(1) + 5).ToArray();
        int perPage = 4096 / blockBytes;
        var hashes = new ulong[pages.Length * perPage];
        using var hasher = new PageWorkers(threads);
        for (int round = 0; round < 3; round++)
        {
            Array.Clear(hashes);
            fixed (ulong* list = pages) fixed (ulong* h = hashes)
                hasher.Hash(layout, list, pages.Length, blockBytes, h);
            for (int i = 0; i < pages.Length; i++)
                for (int j = 0; j < perPage; j++)
                    Assert.Equal(CityHash.Hash64(layout.PageAddress(pages[i]) + j * blockBytes, (nuint)blockBytes), hashes[i * perPage + j]);
        }
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(2, 0)]
    [InlineData(2, 64)]
    [InlineData(3, 512)]
    public void PageWorkers_Apply_OnEveryThread_WritesWhatOnePageAtATimeWrites_AndCountsTheSameDifferences(int threads, int blockBytes)
    {
        using var parallel = new SyntheticGuestMemory(("a", 3UL << 20), ("b", 1UL << 20));
        using var serial = new SyntheticGuestMemory(("a", 3UL << 20), ("b", 1UL << 20));
        parallel.FillRandom(4);
        serial.CopyFrom(parallel);
        var layoutP = new SyncLayout(parallel.Blocks);
        var layoutS = new SyncLayout(serial.Blocks);
        var rng = new Random(threads * 7 + blockBytes);
        var pages = Enumerable.Range(0, 1024).Where(_ => rng.Next(3) == 0).Select(p => (ulong)p).ToArray();
        int perPage = blockBytes == 0 ? 1 : 4096 / blockBytes;
        var masks = pages.Select(_ => blockBytes == 0 ? 0UL : (ulong)rng.NextInt64(1, perPage == 64 ? long.MaxValue : 1L << perPage)).ToArray();
        var offsets = new ulong[pages.Length];
        ulong at = 0;
        for (int i = 0; i < pages.Length; i++)
        {
            offsets[i] = at;
            at += blockBytes == 0 ? 4096UL : (ulong)(System.Numerics.BitOperations.PopCount(masks[i]) * blockBytes);
        }
        var staged = new byte[at];
        rng.NextBytes(staged);
        var diffP = new int[2 * pages.Length];
        var diffS = new int[2 * pages.Length];
        using var workers = new PageWorkers(threads);
        fixed (ulong* list = pages) fixed (ulong* m = masks) fixed (ulong* o = offsets) fixed (byte* data = staged)
        fixed (int* dp = diffP) fixed (int* ds = diffS)
        {
            workers.Apply(layoutP, list, pages.Length, data, blockBytes == 0 ? null : m, blockBytes == 0 ? null : o, blockBytes, dp);
            for (int i = 0; i < pages.Length; i++)
                PageWorkers.ApplyPage(layoutS.PageAddress(pages[i]), data + offsets[i], masks[i], blockBytes, ds + 2 * i);
        }
        Assert.Null(parallel.FirstDifference(serial));
        Assert.Equal(diffS, diffP);
        Assert.Contains(diffP, d => d > 0);
        // every staged byte landed where its mask says
        for (int i = 0; i < pages.Length; i++)
        {
            byte* page = layoutP.PageAddress(pages[i]);
            ulong from = offsets[i];
            if (blockBytes == 0) { Assert.True(new ReadOnlySpan<byte>(page, 4096).SequenceEqual(staged.AsSpan((int)from, 4096))); continue; }
            for (ulong mm = masks[i]; mm != 0; mm &= mm - 1, from += (ulong)blockBytes)
            {
                int b = System.Numerics.BitOperations.TrailingZeroCount(mm);
                Assert.True(new ReadOnlySpan<byte>(page + b * blockBytes, blockBytes).SequenceEqual(staged.AsSpan((int)from, blockBytes)));
            }
        }
    }
}
