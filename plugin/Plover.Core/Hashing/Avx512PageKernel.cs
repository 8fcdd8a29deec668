using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Plover.Hashing.Avx512CityLanes;

namespace Plover.Hashing;

/// <summary>
/// CityHash64 of 8 pages at once: lane i of every zmm register holds page i's state (x, y, z, v1, v2, w1, w2).
/// Each 64-byte block is loaded from the 8 pages and transposed 8x8 (qwords) with unpack + 128-bit shuffles,
/// never gathers (3-4x slower here). Multiplies are vpmullq (AVX-512DQ), rotates vprorq (AVX-512F).
/// The instructions come from <typeparamref name="TOps"/> so the same code can also run on a software model of
/// them (tests on CPUs without AVX-512); PageHasher uses <see cref="Avx512Ops"/>, the real instructions.
/// </summary>
internal static unsafe class Avx512PageKernel
{
    public static bool IsSupported => Avx512Ops.IsSupported;

    private const int LastBlock = ScalarPageKernel.PageSize - 64;

    /// <summary>Hashes the 8 pages (all valid; a short group repeats a page) into hashes[0..8);
    /// next[0..8) are the pages of the following group, prefetched one line per block.</summary>
    public static void Hash8(byte** pages, byte** next, ulong* hashes, bool prefetch) =>
        Hash8<Avx512Ops>(pages, next, hashes, prefetch);

    internal static void Hash8<TOps>(byte** pages, byte** next, ulong* hashes, bool prefetch) where TOps : struct, IVector512Ops
    {
        if (prefetch) Hash8<TOps, PrefetchOn>(pages, next, hashes);
        else Hash8<TOps, PrefetchOff>(pages, next, hashes);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Hash8<TOps, TPf>(byte** pages, byte** next, ulong* hashes)
        where TOps : struct, IVector512Ops where TPf : struct, IPrefetchPolicy
    {
        Vector512<ulong> k1 = Vector512.Create(CityHash.K1);
        Vector512<ulong> len = Vector512.Create((ulong)ScalarPageKernel.PageSize);
        byte* p0 = pages[0], p1 = pages[1], p2 = pages[2], p3 = pages[3];
        byte* p4 = pages[4], p5 = pages[5], p6 = pages[6], p7 = pages[7];

        if (TPf.Enabled)
        {
            for (int i = 0; i < 8; i++)
                Sse.Prefetch0(next[i] + LastBlock);
        }

        // Prologue over the last 64 bytes: L0..L7 are the words at len-64 .. len-8.
        Transpose<TOps>(Load(p0 + LastBlock), Load(p1 + LastBlock), Load(p2 + LastBlock), Load(p3 + LastBlock),
                  Load(p4 + LastBlock), Load(p5 + LastBlock), Load(p6 + LastBlock), Load(p7 + LastBlock),
                  out var l0, out var l1, out var l2, out var l3, out var l4, out var l5, out var l6, out var l7);
        Vector512<ulong> x = l3;
        Vector512<ulong> y = l6 + l1;
        Vector512<ulong> z = HashLen16<TOps>(l2 + len, l5);
        Weak<TOps>(l0, l1, l2, l3, len, z, out var v1, out var v2);
        Weak<TOps>(l4, l5, l6, l7, y + k1, x, out var w1, out var w2);
        Vector512<ulong> first = Vector512.Create(*(ulong*)p0, *(ulong*)p1, *(ulong*)p2, *(ulong*)p3,
                                                  *(ulong*)p4, *(ulong*)p5, *(ulong*)p6, *(ulong*)p7);
        x = TOps.MultiplyLow(x, k1) + first;

        for (nuint off = 0; off < LastBlock; off += 64)
        {
            if (TPf.Enabled)
            {
                Sse.Prefetch0(next[0] + off); Sse.Prefetch0(next[1] + off);
                Sse.Prefetch0(next[2] + off); Sse.Prefetch0(next[3] + off);
                Sse.Prefetch0(next[4] + off); Sse.Prefetch0(next[5] + off);
                Sse.Prefetch0(next[6] + off); Sse.Prefetch0(next[7] + off);
            }
            Transpose<TOps>(Load(p0 + off), Load(p1 + off), Load(p2 + off), Load(p3 + off),
                      Load(p4 + off), Load(p5 + off), Load(p6 + off), Load(p7 + off),
                      out var b0, out var b1, out var b2, out var b3, out var b4, out var b5, out var b6, out var b7);

            x = TOps.MultiplyLow(TOps.RotateRight(x + y + v1 + b1, 37), k1);
            y = TOps.MultiplyLow(TOps.RotateRight(y + v2 + b6, 42), k1);
            x ^= w2;
            y += v1 + b5;
            z = TOps.MultiplyLow(TOps.RotateRight(z + w1, 33), k1);
            Weak<TOps>(b0, b1, b2, b3, TOps.MultiplyLow(v2, k1), x + w1, out v1, out v2);
            Weak<TOps>(b4, b5, b6, b7, z + w2, y + b2, out w1, out w2);
            (z, x) = (x, z);
        }

        Vector512<ulong> shiftMixY = y ^ TOps.ShiftRightLogical(y, 47);
        Vector512<ulong> h = HashLen16<TOps>(HashLen16<TOps>(v1, w1) + TOps.MultiplyLow(shiftMixY, k1) + z,
                                       HashLen16<TOps>(v2, w2) + x);
        h.Store(hashes);
    }
}
