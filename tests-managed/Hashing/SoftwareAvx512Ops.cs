using System.Diagnostics.CodeAnalysis;
using System.Runtime.Intrinsics;
using Plover.Hashing;

namespace Plover.Tests.Hashing;

/// <summary>
/// A software model of the AVX-512 instructions the 8-lane kernel uses, written from Intel's definitions
/// (SDM: VPUNPCKLQDQ, VPUNPCKHQDQ, VSHUFI64X2, VPRORQ, VPSRLQ, VPMULLQ), element by element. It lets the real
/// kernel code (Avx512PageKernel.Hash8&lt;TOps&gt;) run, slowly, on CPUs without AVX-512.
/// </summary>
internal readonly struct SoftwareAvx512Ops : IVector512Ops
{
    public static Vector512<ulong> UnpackLow(Vector512<ulong> a, Vector512<ulong> b) => Map(i =>
        // within each 128-bit lane: element 0 of a, then element 0 of b
        i % 2 == 0 ? a[i] : b[i - 1]);

    public static Vector512<ulong> UnpackHigh(Vector512<ulong> a, Vector512<ulong> b) => Map(i =>
        i % 2 == 0 ? a[i + 1] : b[i]);

    public static Vector512<ulong> Shuffle4x128(Vector512<ulong> a, Vector512<ulong> b, [ConstantExpected] byte control) => Map(i =>
    {
        int lane = i / 2;
        int select = (control >> (2 * lane)) & 3;
        var source = lane < 2 ? a : b;
        return source[select * 2 + i % 2];
    });

    public static Vector512<ulong> RotateRight(Vector512<ulong> v, [ConstantExpected] byte count) => Map(i =>
        (v[i] >> (count & 63)) | (v[i] << ((64 - count) & 63)));

    public static Vector512<ulong> ShiftRightLogical(Vector512<ulong> v, [ConstantExpected] byte count) => Map(i =>
        count > 63 ? 0 : v[i] >> count);

    public static Vector512<ulong> MultiplyLow(Vector512<ulong> a, Vector512<ulong> b) => Map(i => unchecked(a[i] * b[i]));

    private static Vector512<ulong> Map(Func<int, ulong> element)
    {
        Span<ulong> result = stackalloc ulong[8];
        for (int i = 0; i < 8; i++)
            result[i] = element(i);
        return Vector512.Create((ReadOnlySpan<ulong>)result);
    }
}
