using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Plover.Hashing;

/// <summary>The AVX-512 instructions the 8-lane kernel needs (besides add/xor/load/store). Implemented by the
/// real instructions (<see cref="Avx512Ops"/>) and, in the tests, by a software model of the same instructions
/// so the kernel's code is checked on CPUs without AVX-512.</summary>
internal interface IVector512Ops
{
    /// <summary>vpunpcklqdq: [a0 b0 a2 b2 a4 b4 a6 b6].</summary>
    static abstract Vector512<ulong> UnpackLow(Vector512<ulong> a, Vector512<ulong> b);

    /// <summary>vpunpckhqdq: [a1 b1 a3 b3 a5 b5 a7 b7].</summary>
    static abstract Vector512<ulong> UnpackHigh(Vector512<ulong> a, Vector512<ulong> b);

    /// <summary>vshufi64x2: 128-bit lanes [a[c:0-1] a[c:2-3] b[c:4-5] b[c:6-7]].</summary>
    static abstract Vector512<ulong> Shuffle4x128(Vector512<ulong> a, Vector512<ulong> b, [ConstantExpected] byte control);

    /// <summary>vprorq.</summary>
    static abstract Vector512<ulong> RotateRight(Vector512<ulong> v, [ConstantExpected] byte count);

    /// <summary>vpsrlq.</summary>
    static abstract Vector512<ulong> ShiftRightLogical(Vector512<ulong> v, [ConstantExpected] byte count);

    /// <summary>vpmullq: the low 64 bits of each product.</summary>
    static abstract Vector512<ulong> MultiplyLow(Vector512<ulong> a, Vector512<ulong> b);
}

/// <summary>The real AVX-512F/DQ instructions.</summary>
internal readonly struct Avx512Ops : IVector512Ops
{
    public static bool IsSupported => Avx512F.IsSupported && Avx512DQ.IsSupported;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<ulong> UnpackLow(Vector512<ulong> a, Vector512<ulong> b) => Avx512F.UnpackLow(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<ulong> UnpackHigh(Vector512<ulong> a, Vector512<ulong> b) => Avx512F.UnpackHigh(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<ulong> Shuffle4x128(Vector512<ulong> a, Vector512<ulong> b, [ConstantExpected] byte control) =>
        Avx512F.Shuffle4x128(a, b, control);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<ulong> RotateRight(Vector512<ulong> v, [ConstantExpected] byte count) => Avx512F.RotateRight(v, count);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<ulong> ShiftRightLogical(Vector512<ulong> v, [ConstantExpected] byte count) =>
        Avx512F.ShiftRightLogical(v, count);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<ulong> MultiplyLow(Vector512<ulong> a, Vector512<ulong> b) => Avx512DQ.MultiplyLow(a, b);
}
