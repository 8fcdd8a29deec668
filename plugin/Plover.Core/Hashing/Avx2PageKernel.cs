using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Plover.Hashing;

/// <summary>
/// CityHash64 of 4 pages at once in ymm lanes (for AVX2 hosts without AVX-512). AVX2 has no 64-bit multiply:
/// a * k is built from three vpmuludq (lo*lo, hi*lo, lo*hi); rotates are two shifts and an or.
/// Blocks are transposed 4x4 (qwords) with vpunpck{l,h}qdq + vperm2i128.
/// </summary>
internal static unsafe class Avx2PageKernel
{
    public static bool IsSupported => Avx2.IsSupported;

    private const int LastBlock = ScalarPageKernel.PageSize - 64;

    /// <summary>Hashes pages[0..count) (count 1..8; pages up to the next multiple of 4 must be valid) into
    /// hashes[0..count rounded up to 4); next[0..4) are the pages after the group, prefetched.</summary>
    public static void HashGroup(byte** pages, int count, byte** next, ulong* hashes, bool prefetch)
    {
        // The first four prefetch the second four; the second four prefetch the next group's first four.
        byte** following = count > 4 ? pages + 4 : next;
        if (prefetch) Hash4<PrefetchOn>(pages, following, hashes);
        else Hash4<PrefetchOff>(pages, following, hashes);
        if (count > 4)
        {
            if (prefetch) Hash4<PrefetchOn>(pages + 4, next, hashes + 4);
            else Hash4<PrefetchOff>(pages + 4, next, hashes + 4);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Hash4<TPf>(byte** pages, byte** next, ulong* hashes) where TPf : struct, IPrefetchPolicy
    {
        Vector256<ulong> len = Vector256.Create((ulong)ScalarPageKernel.PageSize);
        Vector256<ulong> k1 = Vector256.Create(CityHash.K1);
        byte* p0 = pages[0], p1 = pages[1], p2 = pages[2], p3 = pages[3];

        if (TPf.Enabled)
        {
            for (int i = 0; i < 4; i++)
                Sse.Prefetch0(next[i] + LastBlock);
        }

        LoadBlock(p0 + LastBlock, p1 + LastBlock, p2 + LastBlock, p3 + LastBlock,
                  out var l0, out var l1, out var l2, out var l3, out var l4, out var l5, out var l6, out var l7);
        Vector256<ulong> x = l3;
        Vector256<ulong> y = l6 + l1;
        Vector256<ulong> z = HashLen16(l2 + len, l5);
        Weak(l0, l1, l2, l3, len, z, out var v1, out var v2);
        Weak(l4, l5, l6, l7, y + k1, x, out var w1, out var w2);
        Vector256<ulong> first = Vector256.Create(*(ulong*)p0, *(ulong*)p1, *(ulong*)p2, *(ulong*)p3);
        x = MulK1(x) + first;

        for (nuint off = 0; off < LastBlock; off += 64)
        {
            if (TPf.Enabled)
            {
                Sse.Prefetch0(next[0] + off); Sse.Prefetch0(next[1] + off);
                Sse.Prefetch0(next[2] + off); Sse.Prefetch0(next[3] + off);
            }
            LoadBlock(p0 + off, p1 + off, p2 + off, p3 + off,
                      out var b0, out var b1, out var b2, out var b3, out var b4, out var b5, out var b6, out var b7);

            x = MulK1(RotateRight(x + y + v1 + b1, 37));
            y = MulK1(RotateRight(y + v2 + b6, 42));
            x ^= w2;
            y += v1 + b5;
            z = MulK1(RotateRight(z + w1, 33));
            Weak(b0, b1, b2, b3, MulK1(v2), x + w1, out v1, out v2);
            Weak(b4, b5, b6, b7, z + w2, y + b2, out w1, out w2);
            (z, x) = (x, z);
        }

        Vector256<ulong> shiftMixY = y ^ Avx2.ShiftRightLogical(y, 47);
        Vector256<ulong> h = HashLen16(HashLen16(v1, w1) + MulK1(shiftMixY) + z, HashLen16(v2, w2) + x);
        h.Store(hashes);
    }

    /// <summary>Loads one 64-byte block of each of the 4 pages and transposes it: c_j = qword j of every page.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LoadBlock(byte* p0, byte* p1, byte* p2, byte* p3,
        out Vector256<ulong> c0, out Vector256<ulong> c1, out Vector256<ulong> c2, out Vector256<ulong> c3,
        out Vector256<ulong> c4, out Vector256<ulong> c5, out Vector256<ulong> c6, out Vector256<ulong> c7)
    {
        Transpose(Vector256.Load((ulong*)p0), Vector256.Load((ulong*)p1), Vector256.Load((ulong*)p2), Vector256.Load((ulong*)p3),
                  out c0, out c1, out c2, out c3);
        Transpose(Vector256.Load((ulong*)(p0 + 32)), Vector256.Load((ulong*)(p1 + 32)),
                  Vector256.Load((ulong*)(p2 + 32)), Vector256.Load((ulong*)(p3 + 32)),
                  out c4, out c5, out c6, out c7);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose(Vector256<ulong> r0, Vector256<ulong> r1, Vector256<ulong> r2, Vector256<ulong> r3,
        out Vector256<ulong> c0, out Vector256<ulong> c1, out Vector256<ulong> c2, out Vector256<ulong> c3)
    {
        var t0 = Avx2.UnpackLow(r0, r1);   // [r0[0] r1[0] | r0[2] r1[2]]
        var t1 = Avx2.UnpackHigh(r0, r1);  // [r0[1] r1[1] | r0[3] r1[3]]
        var t2 = Avx2.UnpackLow(r2, r3);
        var t3 = Avx2.UnpackHigh(r2, r3);
        c0 = Avx2.Permute2x128(t0, t2, 0x20);
        c2 = Avx2.Permute2x128(t0, t2, 0x31);
        c1 = Avx2.Permute2x128(t1, t3, 0x20);
        c3 = Avx2.Permute2x128(t1, t3, 0x31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> RotateRight(Vector256<ulong> v, [ConstantExpected(Min = 1, Max = 63)] byte count)
    {
        // Inlined with a literal count, 64 - count folds to a constant and both shifts take immediates.
#pragma warning disable CA1857
        return Avx2.ShiftRightLogical(v, count) | Avx2.ShiftLeftLogical(v, (byte)(64 - count));
#pragma warning restore CA1857
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> MulK1(Vector256<ulong> a) => MulConst(a, CityHash.K1);

    /// <summary>Low 64 bits of a * k: lo(a)lo(k) + ((hi(a)lo(k) + lo(a)hi(k)) &lt;&lt; 32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> MulConst(Vector256<ulong> a, ulong k)
    {
        Vector256<uint> kLo = Vector256.Create(k).AsUInt32();
        Vector256<uint> kHi = Vector256.Create(k >> 32).AsUInt32();
        Vector256<ulong> lolo = Avx2.Multiply(a.AsUInt32(), kLo);
        Vector256<ulong> hilo = Avx2.Multiply(Avx2.ShiftRightLogical(a, 32).AsUInt32(), kLo);
        Vector256<ulong> lohi = Avx2.Multiply(a.AsUInt32(), kHi);
        return lolo + Avx2.ShiftLeftLogical(hilo + lohi, 32);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Weak(Vector256<ulong> w, Vector256<ulong> x, Vector256<ulong> y, Vector256<ulong> z,
                             Vector256<ulong> a, Vector256<ulong> b, out Vector256<ulong> first, out Vector256<ulong> second)
    {
        a += w;
        b = RotateRight(b + a + z, 21);
        Vector256<ulong> c = a;
        a += x + y;
        b += RotateRight(a, 44);
        first = a + z;
        second = b + c;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> HashLen16(Vector256<ulong> u, Vector256<ulong> v)
    {
        Vector256<ulong> a = MulConst(u ^ v, CityHash.KMul);
        a ^= Avx2.ShiftRightLogical(a, 47);
        Vector256<ulong> b = MulConst(v ^ a, CityHash.KMul);
        b ^= Avx2.ShiftRightLogical(b, 47);
        return MulConst(b, CityHash.KMul);
    }
}
