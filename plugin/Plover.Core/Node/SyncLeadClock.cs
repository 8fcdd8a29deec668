using System.Diagnostics;
using Plover.Sync;

namespace Plover.Node;

/// <summary>Stamps the last event of each kind in the open epoch (Stopwatch time; any thread, no allocation) and
/// turns them into a <see cref="SyncLead"/> at the stop that closes it. A stamp from before the previous stop
/// belongs to an earlier epoch and reads as none.</summary>
internal sealed class SyncLeadClock
{
    private long _arrived, _committed, _injected, _output, _idle, _proposed, _lastStop;

    public void InputArrived() => Volatile.Write(ref _arrived, Stopwatch.GetTimestamp());
    public void InputCommitted() => Volatile.Write(ref _committed, Stopwatch.GetTimestamp());
    public void InputInjected() => Volatile.Write(ref _injected, Stopwatch.GetTimestamp());
    public void OutputHeld() => Volatile.Write(ref _output, Stopwatch.GetTimestamp());
    public void IdleTriggered() => Volatile.Write(ref _idle, Stopwatch.GetTimestamp());
    public void SyncProposed() => Volatile.Write(ref _proposed, Stopwatch.GetTimestamp());

    /// <summary>MAIN thread, at the stop that closes the epoch.</summary>
    public SyncLead Take(long stoppedAt)
    {
        long since = _lastStop;
        _lastStop = stoppedAt;
        return new SyncLead(Before(ref _arrived), Before(ref _committed), Before(ref _injected), Before(ref _output),
                            Before(ref _idle), Before(ref _proposed));

        double Before(ref long stamp)
        {
            long t = Volatile.Read(ref stamp);
            return t <= since || t > stoppedAt ? -1 : Math.Round(Stopwatch.GetElapsedTime(t, stoppedAt).TotalMicroseconds, 1);
        }
    }
}
