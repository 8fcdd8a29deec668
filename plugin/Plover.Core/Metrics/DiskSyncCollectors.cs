using Plover.Sync;
using Prometheus;

namespace Plover.Metrics;

/// <summary>
/// A replica's replicated drives in its syncs (issue 15), beside the pages' <c>plover_sync_*_pages_total</c>: the
/// 4 KiB blocks its guest wrote, the blocks in both replicas' union, those whose hashes matched (not sent) and those
/// sent, the disk frames' bytes and the time in disk steps, summed over the syncs (<see cref="SyncDiskTotals"/>, set
/// at each scrape from the sync engine's own accounting). All 0 on a replica without drives.
/// </summary>
internal sealed class DiskSyncCollectors
{
    private readonly Counter _dirty, _union, _identical, _divergent, _wireBytes, _seconds;
    private readonly Gauge _identicalPercent;

    public DiskSyncCollectors(MetricFactory f)
    {
        _dirty = f.CreateCounter("plover_sync_disk_dirty_blocks_total", "4 KiB blocks of the replicated drives this side's guest wrote, taken at the syncs' cuts (a checkpoint of the primary sends them all), summed over the syncs.");
        _union = f.CreateCounter("plover_sync_disk_union_blocks_total", "Disk blocks in the union of both replicas' dirty blocks, summed over the syncs.");
        _identical = f.CreateCounter("plover_sync_disk_identical_blocks_total", "Union disk blocks whose hashes matched on both replicas (not sent).");
        _divergent = f.CreateCounter("plover_sync_disk_divergent_blocks_total", "Union disk blocks that differed and were sent (every union block in checkpoint mode).");
        _identicalPercent = f.CreateGauge("plover_sync_disk_identical_percent", "Identical disk blocks as a percentage of the union disk blocks, over every sync so far (100 * rate(identical) / rate(union) for a window).");
        _wireBytes = f.CreateCounter("plover_sync_disk_wire_bytes_total", "Bytes of the syncs' disk frames (disk bitmaps, block hashes, blocks), both directions, whole frames; also in plover_wire_*_bytes_total{channel=\"synclink\",kind=\"disk\"}.");
        _seconds = f.CreateCounter("plover_sync_disk_seconds_total", "Time this side spent in the syncs' disk steps (the disk bitmaps and the union's read, the block hashes, the blocks on the wire, the backup's write of them).");
    }

    public void Update(SyncMetrics? metrics)
    {
        if (metrics is null) return;
        SyncDiskTotals t = metrics.DiskTotals;
        _dirty.IncTo(t.LocalDirtyBlocks);
        _union.IncTo(t.UnionBlocks);
        _identical.IncTo(t.IdenticalBlocks);
        _divergent.IncTo(t.DivergentBlocks);
        _identicalPercent.Set(t.IdenticalPercent);
        _wireBytes.IncTo(t.WireBytes);
        _seconds.IncTo(t.DiskUs / 1e6);
    }
}
