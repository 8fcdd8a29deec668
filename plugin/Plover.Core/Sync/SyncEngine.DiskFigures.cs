using System.Diagnostics;

namespace Plover.Sync;

/// <summary>
/// The disk part's own figures in a sync's accounting (issue 15 item 5): how long this side spent in its disk steps
/// (<see cref="SyncPause.Disk"/>), the disk frames' bytes (<see cref="SyncStats.DiskWireBytes"/>) and the blocks its
/// guest wrote (<see cref="SyncStats.DiskLocalDirtyBlocks"/>). The steps themselves (SyncEngine.Disks.cs) add their
/// frames to <see cref="SyncStats.Wire"/> by kind, like the RAM's; each call site brackets one with
/// <see cref="DiskStepBegin"/> and <see cref="DiskStepEnd"/>, which take the difference.
/// </summary>
public sealed unsafe partial class SyncEngine
{
    /// <summary>Where a disk step began: the time and the sync's wire bytes so far.</summary>
    private readonly record struct DiskStepMark(long Timestamp, long WireBytes);

    private DiskStepMark DiskStepBegin(SyncStats stats) =>
        _syncDisks ? new DiskStepMark(Stopwatch.GetTimestamp(), stats.Wire.Total) : default;

    private void DiskStepEnd(SyncStats stats, DiskStepMark mark)
    {
        if (!_syncDisks) return;
        stats.Pause.Disk += Microseconds(mark.Timestamp);
        stats.DiskWireBytes += stats.Wire.Total - mark.WireBytes;
    }

    /// <summary>The blocks this side's guest wrote since the last completed sync (the taken dirt the sync covers).
    /// Called where this side waits for its peer anyway (primary: for the ack; backup: for the primary's compare).</summary>
    private void CountDiskLocalDirt(SyncStats stats)
    {
        if (!_syncDisks) return;
        stats.DiskLocalDirtyBlocks = _disks!.LocalBlocks;
    }
}
