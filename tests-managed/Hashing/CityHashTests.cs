using Plover.Hashing;
using Xunit;

namespace Plover.Tests.Hashing;

public class CityHashTests
{
    /// <summary>Known answers of the C++ reference v1.1.1 for bytes[i] = (i*7+3) &amp; 0xff.</summary>
    public static TheoryData<int, ulong> PatternAnswers => new()
    {
        { 0, 0x9ae16a3b2f90404fUL }, { 1, 0xbec09cc447469d8bUL }, { 3, 0x40b4412e33eefd64UL },
        { 4, 0xf3c7ee05197a7b92UL }, { 8, 0x0c97ecbc1e9d2626UL }, { 16, 0x7eda0ed8c837a168UL },
        { 17, 0xc9518fe63ebf6127UL }, { 32, 0xa53f806f23a314e8UL }, { 33, 0x0d861240f8a6c64bUL },
        { 64, 0x1ccefea99389ae75UL }, { 65, 0xacf6a69f1f078342UL }, { 128, 0x899e1a09acbba491UL },
        { 4095, 0xb9fdac4231fd982bUL }, { 4096, 0x8fc9c0fa8db60258UL }, { 4097, 0x672d87853b4d5862UL },
    };

    internal static byte[] Pattern(int n)
    {
        var bytes = new byte[n];
        for (int i = 0; i < n; i++)
            bytes[i] = (byte)((i * 7 + 3) & 0xff);
        return bytes;
    }

    [Theory]
    [MemberData(nameof(PatternAnswers))]
    public void Pattern_prefix_matches_the_reference_answer(int length, ulong expected)
    {
        Assert.Equal(expected, CityHash.Hash64(Pattern(length)));
        Assert.Equal(expected, CityHashReference.Hash64(Pattern(length), 0, length));
    }

    [Fact]
    public void Zero_page_and_ff_page_match_the_reference_answers()
    {
        Assert.Equal(0x06c5df0488653d58UL, CityHash.Hash64(new byte[4096]));
        var ff = new byte[4096];
        Array.Fill(ff, (byte)0xff);
        Assert.Equal(0x2b5e63a363df7394UL, CityHash.Hash64(ff));
    }

    [Fact]
    public void Every_length_up_to_300_at_every_alignment_matches_the_plain_reference()
    {
        var rng = new Random(20261122);
        var buffer = new byte[300 + 16];
        rng.NextBytes(buffer);
        for (int length = 0; length <= 300; length++)
        {
            for (int offset = 0; offset < 8; offset++)
            {
                ulong expected = CityHashReference.Hash64(buffer, offset, length);
                Assert.Equal(expected, CityHash.Hash64(buffer.AsSpan(offset, length)));
            }
        }
    }

    [Fact]
    public void Random_lengths_at_unaligned_offsets_match_the_plain_reference()
    {
        var rng = new Random(7401);
        var buffer = new byte[70_000];
        rng.NextBytes(buffer);
        for (int trial = 0; trial < 2000; trial++)
        {
            // Mostly short and page-sized inputs, sometimes long ones.
            int length = rng.Next(4) switch
            {
                0 => rng.Next(0, 129),
                1 => rng.Next(129, 8200),
                2 => 4096 + rng.Next(-70, 70),
                _ => rng.Next(0, 65_537),
            };
            int offset = rng.Next(0, buffer.Length - length + 1);
            Assert.Equal(CityHashReference.Hash64(buffer, offset, length), CityHash.Hash64(buffer.AsSpan(offset, length)));
        }
    }

    [Fact]
    public void A_single_flipped_bit_changes_the_page_hash()
    {
        var page = Pattern(4096);
        ulong before = CityHash.Hash64(page);
        for (int bit = 0; bit < 4096 * 8; bit += 997)
        {
            page[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.NotEqual(before, CityHash.Hash64(page));
            page[bit / 8] ^= (byte)(1 << (bit % 8));
        }
        Assert.Equal(before, CityHash.Hash64(page));
    }
}
