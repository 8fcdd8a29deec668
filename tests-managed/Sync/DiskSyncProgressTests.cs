using System.Diagnostics;
using Plover.Sync;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>The progress of a disk part in chunks (issue 15 item 4): figures add up per chunk, a line is logged at
/// each tenth of the union and otherwise every 10 s, and the last figures stay once it stopped.</summary>
public class DiskSyncProgressTests
{
    private static readonly long Second = Stopwatch.Frequency;

    [Fact]
    public void LogsEachTenth_AndEveryTenSeconds_AndKeepsTheLastFigures()
    {
        var progress = new DiskSyncProgress();
        Assert.False(progress.Current.Running);
        long t0 = 1000 * Second;
        progress.Start(epoch: 3, blocks: 1000, chunks: 20, now: t0);
        Assert.Equal((true, 3UL, 1000UL, 0UL, 0), (progress.Current.Running, progress.Current.Epoch, progress.Current.Blocks, progress.Current.BlocksDone, progress.Current.Percent));

        Assert.Null(progress.Advance(50, 0, 100, t0 + Second));                   // 5%: nothing yet
        Assert.Equal("sync e3: disk 10%: 100 of 1000 blocks compared, 2 sent (0.0 MiB), chunk 2 of 20, 2.0 s",
                     progress.Advance(50, 2, 8300, t0 + 2 * Second));
        Assert.Null(progress.Advance(50, 0, 100, t0 + 5 * Second));               // 15%, 3 s after the last line
        Assert.Contains("disk 15%", progress.Advance(0, 0, 100, t0 + 13 * Second)); // 10 s since the last line
        Assert.Contains("disk 100%", progress.Advance(850, 10, 1 << 20, t0 + 14 * Second));

        progress.Stop();
        var last = progress.Current;
        Assert.False(last.Running);
        Assert.Equal((1000UL, 12UL, 8600UL + (1 << 20), 5UL, 14.0), (last.BlocksDone, last.BlocksSent, last.BytesSent, last.ChunksDone, last.Seconds));
        Assert.Null(progress.Advance(1, 1, 1, t0 + 20 * Second));                 // stopped: nothing changes
        Assert.Equal(last, progress.Current);
    }
}
