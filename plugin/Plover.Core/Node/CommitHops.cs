using System.Diagnostics;

namespace Plover.Node;

/// <summary>
/// When each hand-off on the commit path happened for a sample of log entries (every <see cref="Every"/>-th index),
/// as Stopwatch timestamps: CLOCK_MONOTONIC, so a leader's and a follower's on one host line up. Benchmarks turn
/// them into the time each hop took (issue 18 item 2). Fixed arrays, one slot per sampled index from the start of
/// the log until they are full (a benchmark's first workloads): recording allocates nothing. Written by the
/// thread that holds the consensus core, and for <see cref="Stage.Proposed"/> and the receive stages the time comes
/// from the thread that queued the proposal or frame.
/// </summary>
public sealed class CommitHops
{
    public enum Stage
    {
        /// <summary>Leader: Propose called (queued for the consensus core).</summary>
        Proposed,
        /// <summary>Leader: the core took the proposal and gave it its index.</summary>
        Taken,
        /// <summary>Leader: the first Accept carrying it is handed to the transport (written and flushed next).</summary>
        AcceptSent,
        /// <summary>Follower: a reader thread received that Accept.</summary>
        AcceptReceived,
        /// <summary>Follower: its core stepped the Accept.</summary>
        AcceptStepped,
        /// <summary>Follower: its Accepted covering the entry is handed to the transport.</summary>
        AcceptedSent,
        /// <summary>Leader: a reader thread received the first Accepted covering it (from any follower).</summary>
        AcceptedReceived,
        /// <summary>Leader: the core stepped that Accepted.</summary>
        AcceptedStepped,
        /// <summary>Any node: the committed entry was handed to the commit callback.</summary>
        Committed,
    }

    public const int Stages = (int)Stage.Committed + 1;
    private readonly long[] _index;
    private readonly long[] _ticks;
    private readonly int[] _ackFrom;

    public CommitHops(int every, int slots = 8192)
    {
        if (every < 1) throw new ArgumentOutOfRangeException(nameof(every));
        Every = every;
        _index = new long[slots];
        _ticks = new long[slots * Stages];
        _ackFrom = new int[slots];
    }

    public int Every { get; }

    public bool Sampled(long index) => index > 0 && index % Every == 0;

    /// <summary>Records stage of index at ticks unless it was recorded already (the first time counts).</summary>
    public void Record(long index, Stage stage, long ticks)
    {
        if (!Sampled(index) || index / Every - 1 >= _index.Length) return;
        int slot = (int)(index / Every - 1);
        _index[slot] = index;
        ref long t = ref _ticks[slot * Stages + (int)stage];
        if (t == 0) t = ticks;
    }

    /// <summary>Records stage for every sampled index in [first, last].</summary>
    public void RecordRange(long first, long last, Stage stage, long ticks, int from = 0)
    {
        long i = first <= 0 ? Every : (first + Every - 1) / Every * Every;
        last = Math.Min(last, (long)_index.Length * Every);
        for (; i <= last; i += Every)
        {
            Record(i, stage, ticks);
            long slot = i / Every - 1;
            if (from != 0 && slot < _ackFrom.Length && _ackFrom[slot] == 0) _ackFrom[slot] = from;
        }
    }

    /// <summary>The recorded entries, oldest index first: (index, the follower whose Accepted came first, ticks per stage).</summary>
    public List<(long Index, int AckFrom, long[] Ticks)> Snapshot()
    {
        var result = new List<(long, int, long[])>();
        for (int slot = 0; slot < _index.Length; slot++)
            if (_index[slot] != 0) result.Add((_index[slot], _ackFrom[slot], _ticks.AsSpan(slot * Stages, Stages).ToArray()));
        return result;
    }

    /// <summary>Microseconds per Stopwatch tick, for readers of the timestamps.</summary>
    public static double MicrosecondsPerTick => 1e6 / Stopwatch.Frequency;
}
