using System.Diagnostics;

namespace Plover.Sync;

/// <summary>
/// How far the disk part of a sync in more than one chunk has got (issue 15 item 4: a joining backup's full sync of a
/// large disk takes minutes): blocks compared of the union, blocks and bytes sent (primary) or received (backup).
/// The engine advances it after each chunk, on its own thread; <see cref="Current"/> may be read from any thread
/// (admin <c>replica</c>, <c>plover status</c>). <see cref="Advance"/> returns a line to log at each tenth of the
/// union and at least every <see cref="LogEvery"/>; a sync of one chunk (every ordinary sync) is not tracked.
/// </summary>
public sealed class DiskSyncProgress
{
    public static readonly TimeSpan LogEvery = TimeSpan.FromSeconds(10);

    /// <summary>One look at the progress. Running: the disk part is under way (otherwise: the last one's figures).</summary>
    public readonly record struct Snapshot(bool Running, ulong Epoch, ulong Blocks, ulong BlocksDone, ulong BlocksSent, ulong BytesSent,
                                           ulong Chunks, ulong ChunksDone, double Seconds)
    {
        public int Percent => Blocks == 0 ? 100 : (int)(BlocksDone * 100 / Blocks);

        public override string ToString() =>
            $"disk {Percent}%: {BlocksDone} of {Blocks} blocks compared, {BlocksSent} sent ({BytesSent / (1024.0 * 1024):F1} MiB), " +
            $"chunk {ChunksDone} of {Chunks}, {Seconds:F1} s";
    }

    private readonly Lock _lock = new();
    private Snapshot _now;
    private long _started, _lastLogged;
    private int _lastTenth;

    public Snapshot Current
    {
        get { lock (_lock) return _now; }
    }

    /// <summary>The disk part of sync epoch starts: blocks to compare in chunks; now is a Stopwatch timestamp.</summary>
    public void Start(ulong epoch, ulong blocks, ulong chunks, long now)
    {
        lock (_lock)
        {
            _now = new Snapshot(true, epoch, blocks, 0, 0, 0, chunks, 0, 0);
            _started = _lastLogged = now;
            _lastTenth = 0;
        }
    }

    /// <summary>One more chunk done: its blocks compared, its divergent blocks sent and their wire bytes. Returns a
    /// line to log (a tenth of the union more done, or <see cref="LogEvery"/> since the last line), else null.</summary>
    public string? Advance(ulong blocks, ulong sent, ulong bytes, long now)
    {
        lock (_lock)
        {
            var s = _now;
            if (!s.Running) return null;
            _now = s with
            {
                BlocksDone = s.BlocksDone + blocks, BlocksSent = s.BlocksSent + sent, BytesSent = s.BytesSent + bytes,
                ChunksDone = s.ChunksDone + 1, Seconds = Stopwatch.GetElapsedTime(_started, now).TotalSeconds,
            };
            int tenth = _now.Blocks == 0 ? 10 : (int)(_now.BlocksDone * 10 / _now.Blocks);
            if (tenth == _lastTenth && Stopwatch.GetElapsedTime(_lastLogged, now) < LogEvery) return null;
            _lastTenth = tenth;
            _lastLogged = now;
            return $"sync e{_now.Epoch}: {_now}";
        }
    }

    /// <summary>The disk part ended (completed or not): the figures stay for the status.</summary>
    public void Stop()
    {
        lock (_lock) _now = _now with { Running = false };
    }
}
