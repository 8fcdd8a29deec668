using Plover.Sync;
using Plover.Tests.Sync;
using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Allocation;

/// <summary>
/// syncvm allocates nothing per page or frame, and a bounded amount per sync: two engines over loopback TCP run
/// syncs with few divergent pages and syncs with many (small frames, so many frames too), after a warm-up that grew
/// every buffer, three rounds of 50 each (the least counts: AllocationMeter.LeastPerUnit). The bytes the process allocated per sync must not grow with the pages, and stay
/// under a small bound: what a sync publishes (its SyncStats in the metrics history), the task that reports it,
/// the few main-thread actions and control messages of each sync (about 4 KiB, the test's own waiting included).
/// Before the allocation work: 4 to 20 bytes more per divergent page (a parsed header per received frame, and per
/// receive that had to wait an operation object of .NET's emulated blocking socket).
/// </summary>
[Collection(AllocationCollection.Name)]
public sealed class SyncAllocationTests(ITestOutputHelper output)
{
    private const int Rounds = 3;
    private const int SyncsPerRound = 50;
    private const int FewPages = 16, ManyPages = 2048;
    /// <summary>Bytes per sync, both engines and the test's own waiting together (twice what a sync costs now).</summary>
    private const double BytesPerSync = 8 * 1024;
    /// <summary>Extra bytes per sync for each extra divergent page (one object per 16-page frame would be 2 or more).</summary>
    private const double BytesPerPage = 1;

    public static TheoryData<string> Modes => ["sub-blocks", "whole pages", "no early resume", "checkpoint"];

    [Theory]
    [MemberData(nameof(Modes))]
    public void SyncsAllocateNothingPerPage(string mode)
    {
        var options = new SyncOptions
        {
            PagesPerFrame = 16, HashesPerFrame = 128, SubBlockChunkPages = 256, HashThreads = 2,
            SubBlockBytes = mode == "whole pages" ? 0 : SyncOptions.DefaultSubBlockBytes,
            EarlyResume = mode != "no early resume", Checkpoint = mode == "checkpoint",
        };
        using var pair = new SyncPair([("pc.ram", 16UL << 20)], options, options);
        ulong epoch = 0;
        for (int i = 0; i < 20; i++) SyncOnce(pair, ++epoch, ManyPages);   // grows every buffer, tiers the code up

        using var sampler = new AllocationSampler();
        double PerSync(int pages, out string rounds) => AllocationMeter.LeastPerUnit(Rounds, () =>
        {
            for (int i = 0; i < SyncsPerRound; i++) SyncOnce(pair, ++epoch, pages);
            return SyncsPerRound;
        }, out rounds);
        double few = PerSync(FewPages, out string fewRounds);
        double many = PerSync(ManyPages, out string manyRounds);
        double perPage = (many - few) / (ManyPages - FewPages);
        string report = $"{mode}: {few:F0} bytes per sync of {FewPages} divergent pages at least ({fewRounds}), {many:F0} of {ManyPages} " +
                        $"({manyRounds}): {perPage:F2} bytes per extra page; sampled: {sampler.Top()}";
        output.WriteLine(report);
        Assert.True(perPage < BytesPerPage, $"{report}; the bound is {BytesPerPage} byte per page");
        Assert.True(Math.Max(few, many) < BytesPerSync, $"{report}; the bound is {BytesPerSync} bytes per sync");
    }

    /// <summary>The primary's guest writes pages distinct pages (so they diverge), then both sides sync.</summary>
    private static void SyncOnce(SyncPair pair, ulong epoch, int pages)
    {
        ulong total = pair.PrimaryMemory.Blocks[0].Pages;
        for (int i = 0; i < pages; i++)
            pair.PrimaryMemory.Write(0, (ulong)i * 7 % total, (int)(epoch % 512) * 8, epoch * 100_000 + (ulong)i);
        var (p, b) = pair.Sync(epoch);
        if (p.Outcome != SyncOutcome.Completed || b.Outcome != SyncOutcome.Completed || p.DivergentPages != (ulong)pages)
            Assert.Fail($"sync e{epoch}: {p}\n{b}");
    }
}
