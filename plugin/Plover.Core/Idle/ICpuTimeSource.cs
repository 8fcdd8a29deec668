namespace Plover.Idle;

/// <summary>CPU time consumed so far by a thread, in nanoseconds.</summary>
public interface ICpuTimeSource
{
    /// <summary>False if the thread is gone or unreadable.</summary>
    bool TryRead(int threadId, out long nanoseconds);
}

/// <summary>A monotonic clock in nanoseconds.</summary>
public interface IMonotonicClock
{
    long NowNanoseconds { get; }
}

public sealed class StopwatchClock : IMonotonicClock
{
    public static readonly StopwatchClock Instance = new();
    public long NowNanoseconds => (long)(System.Diagnostics.Stopwatch.GetTimestamp() * (1e9 / System.Diagnostics.Stopwatch.Frequency));
}
