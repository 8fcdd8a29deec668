using Plover.Sync;
using Plover.Wire;
using Xunit;

namespace Plover.Tests.Sync;

public unsafe class BitmapCodecTests
{
    private static ulong[] Random(int words, double density, int seed, bool clustered = false)
    {
        var rng = new Random(seed);
        var bits = new ulong[words];
        for (int w = 0; w < words; w++)
        {
            if (clustered && rng.NextDouble() < 0.9) continue;
            for (int b = 0; b < 64; b++)
                if (rng.NextDouble() < (clustered ? Math.Min(1, density * 10) : density)) bits[w] |= 1UL << b;
        }
        return bits;
    }

    public static TheoryData<double, bool> Densities() => new() { { 0, false }, { 0.001, false }, { 0.01, false }, { 0.2, false }, { 0.5, false }, { 1, false }, { 0.05, true } };

    [Theory]
    [MemberData(nameof(Densities))]
    public void EveryEncoding_RoundTrips_AndTheChosenOneIsTheSmallest(double density, bool clustered)
    {
        var words = Random(4099, density, 17, clustered);
        fixed (ulong* w = words)
        {
            var (raw, sparse, runs) = BitmapCodec.Sizes(w, (ulong)words.Length);
            var chosen = BitmapCodec.Choose(w, (ulong)words.Length, out long size);
            Assert.Equal(Math.Min(raw, Math.Min(sparse, runs)), size);
            foreach (var (encoding, expected) in new[] { (BitmapEncoding.BitmapRaw, raw), (BitmapEncoding.BitmapSparse, sparse), (BitmapEncoding.BitmapRuns, runs) })
            {
                var buffer = new byte[expected];
                Assert.Equal(expected, BitmapCodec.Encode(w, (ulong)words.Length, encoding, buffer));
                var decoded = new ulong[words.Length];
                fixed (ulong* d = decoded)
                {
                    Assert.True(BitmapCodec.TryDecodeOr(buffer, encoding, d, (ulong)decoded.Length, out ulong set, out string? error), error);
                    Assert.Equal((ulong)words.Sum(x => (long)ulong.PopCount(x)), set);
                }
                Assert.Equal(words, decoded);
            }
            _ = chosen;
        }
    }

    [Fact]
    public void DecodeOrs_IntoTheDestination()
    {
        var a = new ulong[] { 0b1010, 0, 1UL << 63 };
        var b = new ulong[] { 0b0101, 7, 0 };
        fixed (ulong* pa = a)
        {
            var buffer = new byte[64];
            int n = BitmapCodec.Encode(pa, 3, BitmapEncoding.BitmapRuns, buffer);
            fixed (ulong* pb = b)
                Assert.True(BitmapCodec.TryDecodeOr(buffer.AsSpan(0, n), BitmapEncoding.BitmapRuns, pb, 3, out _, out _));
        }
        Assert.Equal(new ulong[] { 0b1111, 7, 1UL << 63 }, b);
    }

    [Fact]
    public void HostileInput_FailsWithAReason_NeverWritesOutOfRange()
    {
        var into = new ulong[6];
        into[4] = into[5] = 0xDEAD;   // past the 4 words given: must never be touched
        fixed (ulong* d = into)
        {
            Assert.False(BitmapCodec.TryDecodeOr(new byte[31], BitmapEncoding.BitmapRaw, d, 4, out _, out var e1));
            Assert.Contains("raw bitmap", e1);
            Assert.False(BitmapCodec.TryDecodeOr([0x04, 1, 2, 3, 4, 5, 6, 7, 8], BitmapEncoding.BitmapSparse, d, 4, out _, out var e2));
            Assert.Contains("past the end", e2);
            Assert.False(BitmapCodec.TryDecodeOr([0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0x00, 1, 0, 0, 0, 0, 0, 0, 0], BitmapEncoding.BitmapSparse, d, 4, out _, out var e3));
            Assert.Contains("repeats", e3);
            Assert.False(BitmapCodec.TryDecodeOr([0x80, 0x02, 0x81, 0x02], BitmapEncoding.BitmapRuns, d, 4, out _, out var e4)); // 256 clear, then 257 set
            Assert.Contains("past the end", e4);
            Assert.False(BitmapCodec.TryDecodeOr([0xFF, 0xFF], BitmapEncoding.BitmapRuns, d, 4, out _, out var e5));
            Assert.Contains("truncated", e5);
            Assert.False(BitmapCodec.TryDecodeOr([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], BitmapEncoding.BitmapRuns, d, 4, out _, out _));
            Assert.False(BitmapCodec.TryDecodeOr([1], (BitmapEncoding)9, d, 4, out _, out var e6));
            Assert.Contains("unknown", e6);
        }
        Assert.Equal(0xDEADUL, into[4]);
        Assert.Equal(0xDEADUL, into[5]);
    }
}
