using System.Diagnostics;
using Plover.Consensus;
using Plover.Metrics;

namespace Plover.Node;

/// <summary>
/// Commit latency of INPUT entries on the primary: the time of each accepted proposal is queued in proposal order,
/// and each INPUT entry committed while leading takes the oldest one (a leader commits its proposals in the order
/// it made them). Fixed ring, no allocation per proposal. Cleared when leadership changes hands.
/// </summary>
internal sealed class ProposalClock
{
    private readonly Lock _lock = new();
    private readonly long[] _ring = new long[1 << 16];
    private long _head, _tail;   // _head: oldest; _tail: next free

    public LatencyHistogram Latency { get; } = new();

    /// <summary>Proposes an INPUT entry with its time queued first (so a commit racing the return still finds it);
    /// a refused proposal takes its time back.</summary>
    public bool ProposeInput(ConsensusDriver driver, ReadOnlySpan<byte> payload)
    {
        lock (_lock)
        {
            if (_tail - _head == _ring.Length) _head++;   // overflow: forget the oldest
            _ring[_tail++ & (_ring.Length - 1)] = Stopwatch.GetTimestamp();
            if (driver.Propose(EntryType.Input, payload)) return true;
            _tail--;
            return false;
        }
    }

    /// <summary>An INPUT entry committed on the leader.</summary>
    public void Committed()
    {
        long now = Stopwatch.GetTimestamp(), at;
        lock (_lock)
        {
            if (_head == _tail) return;
            at = _ring[_head++ & (_ring.Length - 1)];
        }
        Latency.Record(Stopwatch.GetElapsedTime(at, now).TotalMicroseconds);
    }

    public void Clear()
    {
        lock (_lock) _head = _tail;
    }
}
