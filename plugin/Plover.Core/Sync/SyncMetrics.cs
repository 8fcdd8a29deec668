using Plover.Metrics;

namespace Plover.Sync;

/// <summary>Totals over every sync of one engine (a snapshot).</summary>
public sealed record SyncTotals(long Syncs, long Completed, long Aborted, ulong UnionPages, ulong IdenticalPages,
    ulong DivergentPages, SyncWireBytes Wire, double PauseUs, double MaxPauseUs);

/// <summary>The disk part of every sync of one engine, summed (a snapshot; all 0 when it replicates no drives): 4 KiB
/// blocks this side's guest wrote, in the unions, identical (not sent) and divergent (sent), the disk frames' bytes
/// (both directions) and the time in disk steps.</summary>
public readonly record struct SyncDiskTotals(ulong LocalDirtyBlocks, ulong UnionBlocks, ulong IdenticalBlocks, ulong DivergentBlocks,
    long WireBytes, double DiskUs)
{
    /// <summary>Identical blocks as a percentage of the union blocks (0 when no block was dirty).</summary>
    public double IdenticalPercent => UnionBlocks == 0 ? 0 : 100.0 * IdenticalBlocks / UnionBlocks;

    public SyncDiskTotals Add(SyncStats s) => new(LocalDirtyBlocks + s.DiskLocalDirtyBlocks, UnionBlocks + s.DiskUnionBlocks,
        IdenticalBlocks + s.DiskIdenticalBlocks, DivergentBlocks + s.DiskDivergentBlocks, WireBytes + s.DiskWireBytes, DiskUs + s.Pause.Disk);
}

/// <summary>
/// The last N syncs and running totals, for the CLI and the admin socket. Written by the engine thread once per
/// sync, read from any thread.
/// </summary>
public sealed class SyncMetrics
{
    private readonly Lock _lock = new();
    private readonly SyncStats?[] _ring;
    private long _count;
    private long _completed;
    private ulong _union, _identical, _divergent;
    private SyncWireBytes _wire;
    private SyncDiskTotals _disk;
    private double _pause, _maxPause;
    private readonly LatencyHistogram _guestPause = new(), _duration = new();

    public SyncMetrics(int history) => _ring = new SyncStats?[Math.Max(1, history)];

    public SyncStats? Last
    {
        get { lock (_lock) return _count == 0 ? null : _ring[(_count - 1) % _ring.Length]; }
    }

    /// <summary>The last completed sync (null if none is still in the history).</summary>
    public SyncStats? LastCompleted
    {
        get
        {
            lock (_lock)
            {
                for (long i = _count - 1; i >= Math.Max(0, _count - _ring.Length); i--)
                    if (_ring[i % _ring.Length] is { Outcome: SyncOutcome.Completed } s) return s;
                return null;
            }
        }
    }

    /// <summary>The last syncs, oldest first.</summary>
    public SyncStats[] Recent()
    {
        lock (_lock)
        {
            long n = Math.Min(_count, _ring.Length);
            var result = new SyncStats[n];
            for (long i = 0; i < n; i++) result[i] = _ring[(_count - n + i) % _ring.Length]!;
            return result;
        }
    }

    /// <summary>The disk part of every sync so far.</summary>
    public SyncDiskTotals DiskTotals
    {
        get { lock (_lock) return _disk; }
    }

    public SyncTotals Totals
    {
        get
        {
            lock (_lock)
                return new SyncTotals(_count, _completed, _count - _completed, _union, _identical, _divergent, _wire, _pause, _maxPause);
        }
    }

    /// <summary>
    /// The totals, and every sync's guest pause (<see cref="SyncPause.Guest"/>) and duration (<see
    /// cref="SyncPause.Total"/>) as <see cref="LatencyHistogram"/> bucket counts (spans of at least <see
    /// cref="LatencyHistogram.BucketCount"/>), all taken at one moment: the histograms' counts add up to the
    /// totals' <see cref="SyncTotals.Syncs"/> (completed and aborted). For exporters; any thread.
    /// </summary>
    public SyncTotals Snapshot(Span<long> guestPause, Span<long> duration)
    {
        lock (_lock)
        {
            _guestPause.CopyCounts(guestPause);
            _duration.CopyCounts(duration);
            return new SyncTotals(_count, _completed, _count - _completed, _union, _identical, _divergent, _wire, _pause, _maxPause);
        }
    }

    internal void Record(SyncStats stats)
    {
        lock (_lock)
        {
            _ring[_count % _ring.Length] = stats;
            _count++;
            if (stats.Outcome == SyncOutcome.Completed) _completed++;
            _union += stats.UnionPages;
            _identical += stats.IdenticalPages;
            _divergent += stats.DivergentPages;
            _wire.Add(stats.Wire);
            if (stats.DiskUnionBlocks > 0 || stats.DiskLocalDirtyBlocks > 0 || stats.DiskWireBytes > 0) _disk = _disk.Add(stats);
            _pause += stats.Pause.Guest;   // what the guest's clients felt (less than the sync when it resumed early)
            _maxPause = Math.Max(_maxPause, stats.Pause.Guest);
            _guestPause.Record(stats.Pause.Guest);
            _duration.Record(stats.Pause.Total);
        }
    }
}
