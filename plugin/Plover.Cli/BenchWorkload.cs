using System.Globalization;

namespace Plover.Cli;

/// <summary>One workload of <c>plover bench-node</c> (see the usage text for the SPEC syntax).</summary>
internal sealed record BenchWorkload(string Name, string Kind, int Size, int Clients, int Window, int Count)
{
    public const int MinInputSize = BenchInput.HeaderSize;

    public static BenchWorkload Parse(string spec)
    {
        var p = spec.Split(':');
        int Num(int i, string what, int min)
        {
            if (!int.TryParse(p[i], NumberStyles.None, CultureInfo.InvariantCulture, out int v) || v < min)
                throw new UsageException($"bench-node: --workload '{spec}': {what} must be an integer >= {min}, got '{p[i]}'");
            return v;
        }
        if (p.Length < 2 || p[0].Length == 0) throw new UsageException($"bench-node: --workload '{spec}': expected NAME:KIND:...");
        switch (p[1])
        {
            case "consensus":
                if (p.Length != 6) throw new UsageException($"bench-node: --workload '{spec}': expected NAME:consensus:SIZE:CLIENTS:WINDOW:COUNT");
                return new BenchWorkload(p[0], p[1], Num(2, "SIZE", MinInputSize), Num(3, "CLIENTS", 1), Num(4, "WINDOW", 1), Num(5, "COUNT", 1));
            case "ping":
                if (p.Length != 4) throw new UsageException($"bench-node: --workload '{spec}': expected NAME:ping:SIZE:COUNT");
                return new BenchWorkload(p[0], p[1], Num(2, "SIZE", 16), 1, 1, Num(3, "COUNT", 1));
            default:
                throw new UsageException($"bench-node: --workload '{spec}': kind must be consensus or ping, got '{p[1]}'");
        }
    }
}

/// <summary>Layout of a synthetic input: who proposed it, for which workload and client, its sequence number and when.</summary>
internal static class BenchInput
{
    // i32 proposer, i16 workload, i16 client, i64 seq, i64 sent (Stopwatch ticks), then padding up to the size
    public const int HeaderSize = 24;

    public static void Write(Span<byte> dest, int proposer, int workload, int client, long seq, long sent)
    {
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(dest, proposer);
        System.Buffers.Binary.BinaryPrimitives.WriteInt16LittleEndian(dest[4..], (short)workload);
        System.Buffers.Binary.BinaryPrimitives.WriteInt16LittleEndian(dest[6..], (short)client);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(dest[8..], seq);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(dest[16..], sent);
        for (int i = HeaderSize; i < dest.Length; i++) dest[i] = (byte)(seq + i);
    }

    public static bool TryRead(ReadOnlySpan<byte> s, out int proposer, out int workload, out int client, out long seq, out long sent)
    {
        proposer = workload = client = 0;
        seq = sent = 0;
        if (s.Length < HeaderSize) return false;
        proposer = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(s);
        workload = System.Buffers.Binary.BinaryPrimitives.ReadInt16LittleEndian(s[4..]);
        client = System.Buffers.Binary.BinaryPrimitives.ReadInt16LittleEndian(s[6..]);
        seq = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(s[8..]);
        sent = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(s[16..]);
        return true;
    }
}

/// <summary>Latencies in Stopwatch ticks, summarized as percentiles in microseconds.</summary>
internal sealed class LatencyRecorder
{
    private readonly long[] _samples;
    private int _count;

    public LatencyRecorder(int capacity) => _samples = new long[capacity];

    public int Count => Math.Min(Volatile.Read(ref _count), _samples.Length);
    public int Capacity => _samples.Length;

    public void Add(long ticks)
    {
        int i = Interlocked.Increment(ref _count) - 1;
        if (i < _samples.Length) _samples[i] = ticks;
    }

    public (double P50, double P99, double P999, double Max, double Mean) Summary()
    {
        int n = Math.Min(Count, _samples.Length);
        if (n == 0) return (0, 0, 0, 0, 0);
        var s = _samples;
        Array.Sort(s, 0, n);
        double us(long t) => t * 1e6 / System.Diagnostics.Stopwatch.Frequency;
        double mean = 0;
        for (int i = 0; i < n; i++) mean += us(s[i]);
        long At(double q) => s[Math.Clamp((int)Math.Ceiling(q * n) - 1, 0, n - 1)];
        return (us(At(0.50)), us(At(0.99)), us(At(0.999)), us(s[n - 1]), mean / n);
    }

    /// <summary>The quantiles at which <see cref="Cdf"/> reads the samples: 0 (the minimum), 1% to 99% in steps of
    /// 1%, 99.5%, 99.9%, 99.99% and 1 (the maximum).</summary>
    public static readonly double[] CdfQuantiles =
        [0, .. Enumerable.Range(1, 99).Select(i => i / 100.0), 0.995, 0.999, 0.9999, 1];

    /// <summary>
    /// The samples' distribution as (quantile, microseconds) points at <see cref="CdfQuantiles"/> (the same
    /// nearest-rank rule as <see cref="Summary"/>), for a CDF plot; empty without samples.
    /// </summary>
    public (double Q, double Us)[] Cdf()
    {
        int n = Math.Min(Count, _samples.Length);
        if (n == 0) return [];
        var s = _samples;
        Array.Sort(s, 0, n);
        double us(long t) => t * 1e6 / System.Diagnostics.Stopwatch.Frequency;
        return CdfQuantiles.Select(q => (q, us(s[Math.Clamp((int)Math.Ceiling(q * n) - 1, 0, n - 1)]))).ToArray();
    }
}
