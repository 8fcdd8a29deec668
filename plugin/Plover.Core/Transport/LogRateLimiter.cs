namespace Plover.Transport;

/// <summary>
/// Lets at most Burst messages through per Window and counts the rest, so anyone who can open TCP connections
/// cannot make a node log without limit. The first message of the next window says how many were left out.
/// Thread-safe.
/// </summary>
public sealed class LogRateLimiter(int burst, TimeSpan window)
{
    private readonly object _lock = new();
    private long _windowStart = long.MinValue;
    private int _count;
    private long _suppressed;

    /// <summary>Logs message through log unless this window's burst is spent; true if it was logged.</summary>
    public bool Log(Action<string> log, string message)
    {
        long left;
        lock (_lock)
        {
            long now = Environment.TickCount64;
            if (_windowStart == long.MinValue || now - _windowStart >= (long)window.TotalMilliseconds)
            {
                _windowStart = now;
                _count = 0;
            }
            if (_count >= burst)
            {
                _suppressed++;
                return false;
            }
            _count++;
            left = _suppressed;
            _suppressed = 0;
        }
        log(left == 0 ? message : $"{message} ({left} similar messages left out before this one)");
        return true;
    }
}
