namespace Plover.Consensus;

/// <summary>
/// Randomized election timeout in ticks, drawn uniformly from [min, max] on every reset so that two
/// leader-capable nodes rarely campaign at the same moment. The Random is injected (seeded in tests).
/// </summary>
internal sealed class ElectionTimer
{
    private readonly int _min, _max;
    private readonly Random _random;

    public ElectionTimer(int minTicks, int maxTicks, Random random)
    {
        _min = minTicks;
        _max = maxTicks;
        _random = random;
        Reset();
    }

    public long Elapsed { get; private set; }
    public long Timeout { get; private set; }

    public void Reset()
    {
        Elapsed = 0;
        Timeout = _random.Next(_min, _max + 1);
    }

    /// <summary>Advances by one tick; true once the timeout has passed (stays true until Reset).</summary>
    public bool Tick() => ++Elapsed >= Timeout;
}
