namespace Plover.Tests.Allocation;

/// <summary>Bytes allocated and garbage collections by the whole process between <see cref="Start"/> and now.</summary>
internal readonly struct AllocationMeter
{
    private readonly long _bytes;
    private readonly int _gen0;

    private AllocationMeter(long bytes, int gen0)
    {
        _bytes = bytes;
        _gen0 = gen0;
    }

    public static AllocationMeter Start() => new(GC.GetTotalAllocatedBytes(precise: true), GC.CollectionCount(0));

    public long Bytes => GC.GetTotalAllocatedBytes(precise: true) - _bytes;
    public int Collections => GC.CollectionCount(0) - _gen0;

    /// <summary>
    /// Runs round several times and keeps the least bytes allocated per unit of work (round returns how many units
    /// it did: commits, messages, frames). The process is shared with the test runner, whose own work (loading,
    /// reporting results) comes in bursts that one round may catch; garbage made per unit is in every round.
    /// detail lists every round.
    /// </summary>
    public static double LeastPerUnit(int rounds, Func<long> round, out string detail)
    {
        double least = double.MaxValue;
        var seen = new string[rounds];
        for (int i = 0; i < rounds; i++)
        {
            var meter = Start();
            long units = round();
            long bytes = meter.Bytes;
            double perUnit = (double)bytes / Math.Max(1, units);
            least = Math.Min(least, perUnit);
            seen[i] = $"{bytes} B / {units} = {perUnit:F2}";
        }
        detail = string.Join("; ", seen);
        return least;
    }
}
