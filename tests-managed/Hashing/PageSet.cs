using System.Runtime.InteropServices;
using Plover.Hashing;

namespace Plover.Tests.Hashing;

/// <summary>Native memory holding test pages (random, with a zero page and an all-0xff page mixed in),
/// optionally starting at an unaligned address, plus the expected hash of each page.</summary>
internal sealed unsafe class PageSet : IDisposable
{
    private readonly byte* _allocation;

    public PageSet(int pageCount, int seed, int misalign = 0)
    {
        PageCount = pageCount;
        _allocation = (byte*)NativeMemory.AlignedAlloc((nuint)(pageCount * 4096 + 64), 4096);
        Base = _allocation + misalign;
        var rng = new Random(seed);
        var span = new Span<byte>(Base, pageCount * 4096);
        rng.NextBytes(span);
        for (int p = 0; p < pageCount; p++)
        {
            if (p % 13 == 5) span.Slice(p * 4096, 4096).Clear();
            if (p % 17 == 3) span.Slice(p * 4096, 4096).Fill(0xff);
        }
        Expected = new ulong[pageCount];
        for (int p = 0; p < pageCount; p++)
            Expected[p] = CityHash.Hash64(span.Slice(p * 4096, 4096));
    }

    public int PageCount { get; }
    public byte* Base { get; }
    public ulong[] Expected { get; }

    public ReadOnlySpan<byte> Page(int p) => new(Base + (long)p * 4096, 4096);

    public void Dispose() => NativeMemory.AlignedFree(_allocation);
}
