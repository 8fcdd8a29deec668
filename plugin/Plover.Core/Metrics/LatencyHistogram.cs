using System.Numerics;

namespace Plover.Metrics;

/// <summary>
/// Latencies in microseconds, counted into log-linear buckets (32 per power of two, so a percentile is off by at
/// most about 3%): recording is one interlocked increment, no allocation, any thread. Values from 0 to about 35
/// minutes; larger ones count in the last bucket.
/// </summary>
public sealed class LatencyHistogram
{
    private const int SubBits = 5;                  // 32 sub-buckets per power of two
    private const int Sub = 1 << SubBits;
    private const int Powers = 32;                  // up to 2^(31+1) us
    /// <summary>How many buckets there are (<see cref="CopyCounts"/>, <see cref="BucketMidpointUs"/>).</summary>
    public const int BucketCount = Sub + Powers * Sub;
    private readonly long[] _counts = new long[BucketCount];
    private long _total;
    private long _sumUs;
    private long _maxUs;

    public long Count => Interlocked.Read(ref _total);
    public double MeanUs => Count == 0 ? 0 : (double)Interlocked.Read(ref _sumUs) / Count;
    public long MaxUs => Interlocked.Read(ref _maxUs);

    public void Record(double microseconds)
    {
        long us = microseconds <= 0 ? 0 : microseconds >= long.MaxValue / 2 ? long.MaxValue / 2 : (long)microseconds;
        Interlocked.Increment(ref _counts[Index(us)]);
        Interlocked.Increment(ref _total);
        Interlocked.Add(ref _sumUs, us);
        long max;
        while (us > (max = Interlocked.Read(ref _maxUs)) && Interlocked.CompareExchange(ref _maxUs, us, max) != max) { }
    }

    /// <summary>The value below which a fraction q (0..1) of the recorded latencies lie (bucket midpoint), 0 if empty.</summary>
    public double PercentileUs(double q)
    {
        long total = Count;
        if (total == 0) return 0;
        long rank = Math.Max(1, (long)Math.Ceiling(q * total));
        long seen = 0;
        for (int i = 0; i < _counts.Length; i++)
        {
            seen += Interlocked.Read(ref _counts[i]);
            if (seen >= rank) return Math.Min(Midpoint(i), MaxUs);
        }
        return MaxUs;
    }

    /// <summary>Copies every bucket's count into counts (at least <see cref="BucketCount"/> long); returns their sum.
    /// Any thread; the copy is not atomic against concurrent recording (each count is).</summary>
    public long CopyCounts(Span<long> counts)
    {
        long sum = 0;
        for (int i = 0; i < _counts.Length; i++) sum += counts[i] = Interlocked.Read(ref _counts[i]);
        return sum;
    }

    /// <summary>The middle of bucket index's range, in microseconds (its value for exporters).</summary>
    public static double BucketMidpointUs(int index) => Midpoint(index);

    public void Reset()
    {
        Array.Clear(_counts);
        Interlocked.Exchange(ref _total, 0);
        Interlocked.Exchange(ref _sumUs, 0);
        Interlocked.Exchange(ref _maxUs, 0);
    }

    private static int Index(long us)
    {
        if (us < Sub) return (int)us;
        int power = 63 - BitOperations.LeadingZeroCount((ulong)us);      // >= SubBits
        int sub = (int)(us >> (power - SubBits)) & (Sub - 1);
        int index = Sub + (power - SubBits) * Sub + sub;
        return Math.Min(index, Sub + Powers * Sub - 1);
    }

    private static double Midpoint(int index)
    {
        if (index < Sub) return index;
        int power = (index - Sub) / Sub + SubBits;
        int sub = (index - Sub) % Sub;
        double low = (double)(1L << power) + ((double)sub * (1L << (power - SubBits)));
        return low + (1L << (power - SubBits)) / 2.0;
    }
}
