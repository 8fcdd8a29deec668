using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Plover.Hashing;

/// <summary>CityHash64's building blocks on eight 64-bit lanes at once (one hash per lane), shared by the page
/// kernel and the sub-block kernel.</summary>
internal static unsafe class Avx512CityLanes
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<ulong> Load(byte* p) => Vector512.Load((ulong*)p);

    /// <summary>Rows r0..r7 (8 qwords of page i) to columns c0..c7 (qword j of every page): 8 vpunpck{l,h}qdq,
    /// then two rounds of 8 vshufi64x2. Control 0x88 picks 128-bit lanes (0,2) of each source, 0xDD lanes (1,3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose<TOps>(
        Vector512<ulong> r0, Vector512<ulong> r1, Vector512<ulong> r2, Vector512<ulong> r3,
        Vector512<ulong> r4, Vector512<ulong> r5, Vector512<ulong> r6, Vector512<ulong> r7,
        out Vector512<ulong> c0, out Vector512<ulong> c1, out Vector512<ulong> c2, out Vector512<ulong> c3,
        out Vector512<ulong> c4, out Vector512<ulong> c5, out Vector512<ulong> c6, out Vector512<ulong> c7)
        where TOps : struct, IVector512Ops
    {
        // t0 = [r0[0] r1[0] | r0[2] r1[2] | r0[4] r1[4] | r0[6] r1[6]], t1 the same for the odd words.
        var t0 = TOps.UnpackLow(r0, r1);
        var t1 = TOps.UnpackHigh(r0, r1);
        var t2 = TOps.UnpackLow(r2, r3);
        var t3 = TOps.UnpackHigh(r2, r3);
        var t4 = TOps.UnpackLow(r4, r5);
        var t5 = TOps.UnpackHigh(r4, r5);
        var t6 = TOps.UnpackLow(r6, r7);
        var t7 = TOps.UnpackHigh(r6, r7);
        // u0 = [words 0 of rows 0-1 | words 4 of rows 0-1 | words 0 of rows 2-3 | words 4 of rows 2-3], etc.
        var u0 = TOps.Shuffle4x128(t0, t2, 0x88);
        var u1 = TOps.Shuffle4x128(t0, t2, 0xDD);
        var u2 = TOps.Shuffle4x128(t4, t6, 0x88);
        var u3 = TOps.Shuffle4x128(t4, t6, 0xDD);
        var u4 = TOps.Shuffle4x128(t1, t3, 0x88);
        var u5 = TOps.Shuffle4x128(t1, t3, 0xDD);
        var u6 = TOps.Shuffle4x128(t5, t7, 0x88);
        var u7 = TOps.Shuffle4x128(t5, t7, 0xDD);
        c0 = TOps.Shuffle4x128(u0, u2, 0x88);
        c4 = TOps.Shuffle4x128(u0, u2, 0xDD);
        c2 = TOps.Shuffle4x128(u1, u3, 0x88);
        c6 = TOps.Shuffle4x128(u1, u3, 0xDD);
        c1 = TOps.Shuffle4x128(u4, u6, 0x88);
        c5 = TOps.Shuffle4x128(u4, u6, 0xDD);
        c3 = TOps.Shuffle4x128(u5, u7, 0x88);
        c7 = TOps.Shuffle4x128(u5, u7, 0xDD);
    }

    /// <summary>WeakHashLen32WithSeeds, lane-wise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Weak<TOps>(Vector512<ulong> w, Vector512<ulong> x, Vector512<ulong> y, Vector512<ulong> z,
                             Vector512<ulong> a, Vector512<ulong> b, out Vector512<ulong> first, out Vector512<ulong> second)
        where TOps : struct, IVector512Ops
    {
        a += w;
        b = TOps.RotateRight(b + a + z, 21);
        Vector512<ulong> c = a;
        a += x + y;
        b += TOps.RotateRight(a, 44);
        first = a + z;
        second = b + c;
    }

    /// <summary>Hash128to64(low = u, high = v), lane-wise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<ulong> HashLen16<TOps>(Vector512<ulong> u, Vector512<ulong> v) where TOps : struct, IVector512Ops
    {
        Vector512<ulong> mul = Vector512.Create(CityHash.KMul);
        Vector512<ulong> a = TOps.MultiplyLow(u ^ v, mul);
        a ^= TOps.ShiftRightLogical(a, 47);
        Vector512<ulong> b = TOps.MultiplyLow(v ^ a, mul);
        b ^= TOps.ShiftRightLogical(b, 47);
        return TOps.MultiplyLow(b, mul);
    }
}
