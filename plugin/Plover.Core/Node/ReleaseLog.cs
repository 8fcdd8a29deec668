namespace Plover.Node;

/// <summary>
/// Frames a replica let out, per consensus term, with the first and last time it did (Unix microseconds). The
/// split-brain checks read it from every node: two nodes must never release in the same term, and a node that
/// released in term t must have stopped before another started in a later term. Any thread.
/// </summary>
public sealed class ReleaseLog
{
    public readonly record struct Window(long Term, long Frames, long FirstUnixUs, long LastUnixUs);

    private readonly Lock _lock = new();
    private readonly SortedDictionary<long, Window> _byTerm = new();

    public void Record(long term, long frames, long unixUs)
    {
        if (frames <= 0) return;
        lock (_lock)
        {
            _byTerm[term] = _byTerm.TryGetValue(term, out var w)
                ? w with { Frames = w.Frames + frames, FirstUnixUs = Math.Min(w.FirstUnixUs, unixUs), LastUnixUs = Math.Max(w.LastUnixUs, unixUs) }
                : new Window(term, frames, unixUs, unixUs);
        }
    }

    /// <summary>Oldest term first.</summary>
    public Window[] Windows()
    {
        lock (_lock) return _byTerm.Values.ToArray();
    }

    public static long NowUnixUs() => (DateTime.UtcNow - DateTime.UnixEpoch).Ticks / 10;
}
