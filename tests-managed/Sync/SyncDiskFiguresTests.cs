using System.Text;
using Plover.Metrics;
using Plover.Sync;
using Plover.Tests.Metrics;
using Prometheus;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>
/// The disk part of a sync in its accounting and in the Prometheus metrics (issue 15 item 5): the blocks each side's
/// guest wrote, the union, identical and divergent blocks, the disk frames' bytes and the time in disk steps, from a
/// real sync of two engines with synthetic drives.
/// </summary>
public class SyncDiskFiguresTests
{
    private static readonly (string, ulong)[] Ram = [("pc.ram", 2UL << 20)];
    private static readonly (string, ulong)[] Drives = [("data0", 1UL << 20)];
    private const int Block = 4096;

    private static SyncOptions Options() => new() { PagesPerFrame = 2, HashesPerFrame = 4, Timeout = TimeSpan.FromSeconds(5) };

    private static byte[] Fill(byte value, int length) => Enumerable.Repeat(value, length).ToArray();

    /// <summary>The primary writes blocks 0-3 (0 and 1 as the backup does), the backup blocks 0, 1 and 10: 4 and 3
    /// dirty, a union of 5, 2 identical (0, 1), 3 divergent (2, 3, 10).</summary>
    private static void Write(SyncPair pair)
    {
        pair.PrimaryDisks!.GuestWrite(0, 0, Fill(0x11, 2 * Block));
        pair.BackupDisks!.GuestWrite(0, 0, Fill(0x11, 2 * Block));
        pair.PrimaryDisks.GuestWrite(0, 2 * Block, Fill(0x22, 2 * Block));
        pair.BackupDisks.GuestWrite(0, 10 * Block, Fill(0x33, 100));
    }

    [Fact]
    public void A_sync_accounts_its_disk_part_apart_from_the_pages()
    {
        using var pair = new SyncPair(Ram, Options(), Options(), drives: Drives);
        Write(pair);
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(4UL, p.DiskLocalDirtyBlocks);
        Assert.Equal(3UL, b.DiskLocalDirtyBlocks);
        foreach (var s in new[] { p, b })
        {
            Assert.Equal(5UL, s.DiskUnionBlocks);
            Assert.Equal(2UL, s.DiskIdenticalBlocks);
            Assert.Equal(3UL, s.DiskDivergentBlocks);
            Assert.True(s.Pause.Disk > 0, $"{s.Role}: no time in disk steps");
        }
        Assert.True(p.Pause.Disk >= p.Pause.DiskRead);
        // the same frames seen from both ends: two bitmaps, the backup's 5 block hashes, the 3 divergent blocks
        Assert.Equal(p.DiskWireBytes, b.DiskWireBytes);
        Assert.True(p.DiskWireBytes > 3 * (8 + Block) + 5 * 8, $"{p.DiskWireBytes} B");
        Assert.True(p.DiskWireBytes < 4 * (8 + Block) + 2048, $"{p.DiskWireBytes} B");
        Assert.True(p.Wire.Total > p.DiskWireBytes);

        // nothing written: only the two (empty) disk bitmaps travel
        var (p2, _) = pair.Sync(2);
        Assert.Equal(SyncOutcome.Completed, p2.Outcome);
        Assert.Equal(0UL, p2.DiskLocalDirtyBlocks);
        Assert.Equal(0UL, p2.DiskUnionBlocks);
        Assert.InRange(p2.DiskWireBytes, 1, 1024);

        var totals = pair.Primary.Metrics.DiskTotals;
        Assert.Equal(new SyncDiskTotals(4, 5, 2, 3, p.DiskWireBytes + p2.DiskWireBytes, p.Pause.Disk + p2.Pause.Disk), totals);
        Assert.Equal(40.0, totals.IdenticalPercent);
    }

    [Fact]
    public void A_sync_without_drives_has_no_disk_figures()
    {
        using var pair = new SyncPair(Ram, Options(), Options());
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(0, p.DiskWireBytes);
        Assert.Equal(0.0, p.Pause.Disk);
        Assert.Equal(default, pair.Primary.Metrics.DiskTotals);
    }

    [Fact]
    public void The_metrics_carry_the_disk_series_of_the_syncs()
    {
        using var pair = new SyncPair(Ram, Options(), Options(), drives: Drives);
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var collectors = new DiskSyncCollectors(Prometheus.Metrics.WithCustomRegistry(registry));
        collectors.Update(pair.Primary.Metrics);
        var before = Collect(registry);
        Assert.Equal(0, before["plover_sync_disk_union_blocks_total"]);
        Assert.Equal(0, before["plover_sync_disk_identical_percent"]);

        Write(pair);
        var (p, _) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        collectors.Update(pair.Primary.Metrics);
        var after = Collect(registry);
        Assert.Equal("counter", after.Type("plover_sync_disk_union_blocks_total"));
        Assert.Equal(4, after["plover_sync_disk_dirty_blocks_total"]);
        Assert.Equal(5, after["plover_sync_disk_union_blocks_total"]);
        Assert.Equal(2, after["plover_sync_disk_identical_blocks_total"]);
        Assert.Equal(3, after["plover_sync_disk_divergent_blocks_total"]);
        Assert.Equal(40, after["plover_sync_disk_identical_percent"]);
        Assert.Equal(p.DiskWireBytes, after["plover_sync_disk_wire_bytes_total"]);
        Assert.Equal(p.Pause.Disk / 1e6, after["plover_sync_disk_seconds_total"], 9);
    }

    private static PrometheusText Collect(CollectorRegistry registry)
    {
        using var s = new MemoryStream();
        registry.CollectAndExportAsTextAsync(s).GetAwaiter().GetResult();
        return new PrometheusText(Encoding.UTF8.GetString(s.ToArray()));
    }
}
