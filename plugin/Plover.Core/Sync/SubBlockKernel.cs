using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Plover.Hashing.Avx512CityLanes;
using Plover.Hashing;

namespace Plover.Sync;

/// <summary>The instructions the sub-block kernel needs: the page kernel's (<see cref="IVector512Ops"/>) and a byte
/// swap of each qword (CityHash64's 33..64-byte path). Real instructions in <see cref="SubBlockAvx512Ops"/>; the
/// tests run the same kernel code on a software model of them, so it is checked on CPUs without AVX-512.</summary>
internal interface ISubBlockOps : IVector512Ops
{
    /// <summary>vpshufb with a per-qword reversal: the bytes of each qword in reverse order.</summary>
    static abstract Vector512<ulong> ByteSwap(Vector512<ulong> v);
}

/// <summary>AVX-512F/DQ/BW.</summary>
internal readonly struct SubBlockAvx512Ops : ISubBlockOps
{
    public static bool IsSupported => Avx512Ops.IsSupported && Avx512BW.IsSupported;

    private static readonly Vector512<byte> Reverse = Vector512.Create(
        (byte)7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8,
        7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<ulong> ByteSwap(Vector512<ulong> v) => Avx512BW.Shuffle(v.AsByte(), Reverse).AsUInt64();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<ulong> UnpackLow(Vector512<ulong> a, Vector512<ulong> b) => Avx512Ops.UnpackLow(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<ulong> UnpackHigh(Vector512<ulong> a, Vector512<ulong> b) => Avx512Ops.UnpackHigh(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<ulong> Shuffle4x128(Vector512<ulong> a, Vector512<ulong> b, [System.Diagnostics.CodeAnalysis.ConstantExpected] byte control) =>
        Avx512Ops.Shuffle4x128(a, b, control);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<ulong> RotateRight(Vector512<ulong> v, [System.Diagnostics.CodeAnalysis.ConstantExpected] byte count) => Avx512Ops.RotateRight(v, count);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<ulong> ShiftRightLogical(Vector512<ulong> v, [System.Diagnostics.CodeAnalysis.ConstantExpected] byte count) =>
        Avx512Ops.ShiftRightLogical(v, count);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<ulong> MultiplyLow(Vector512<ulong> a, Vector512<ulong> b) => Avx512Ops.MultiplyLow(a, b);
}

/// <summary>
/// CityHash64 (bit-exact) of the sub-blocks of a page, 8 sub-blocks at a time in zmm lanes: lane i holds sub-block
/// i of a group of 8 consecutive ones. 64-byte sub-blocks take CityHash64's 33..64-byte path (11 vpmullq and 3
/// byte swaps per 8 sub-blocks, after one 8x8 qword transpose); 128..512-byte ones its long path, as the page
/// kernel does for 4096 bytes. 1024-byte sub-blocks (4 per page) and CPUs without AVX-512F/DQ/BW use the scalar
/// CityHash64. About 8x the scalar speed on 64-byte sub-blocks here (bench sync).
/// </summary>
internal static unsafe class SubBlockKernel
{
    public static bool IsSupported => SubBlockAvx512Ops.IsSupported;

    /// <summary>4096 / blockBytes hashes of the page's sub-blocks into output, in address order.</summary>
    public static void HashPage(byte* page, int blockBytes, ulong* output)
    {
        if (IsSupported && blockBytes <= 512) HashPage<SubBlockAvx512Ops>(page, blockBytes, output);
        else HashPageScalar(page, blockBytes, output);
    }

    public static void HashPageScalar(byte* page, int blockBytes, ulong* output)
    {
        for (int o = 0, i = 0; o < GuestRamBlock.PageSize; o += blockBytes, i++)
            output[i] = CityHash.Hash64(page + o, (nuint)blockBytes);
    }

    /// <summary>The vector kernel on the given instructions (blockBytes 64..512, a power of two).</summary>
    internal static void HashPage<TOps>(byte* page, int blockBytes, ulong* output) where TOps : struct, ISubBlockOps
    {
        int groupBytes = 8 * blockBytes;
        if (blockBytes == 64)
        {
            for (int g = 0; g < GuestRamBlock.PageSize; g += groupBytes, output += 8) Hash64x8<TOps>(page + g, output);
        }
        else
        {
            for (int g = 0; g < GuestRamBlock.PageSize; g += groupBytes, output += 8) HashLongx8<TOps>(page + g, blockBytes, output);
        }
    }

    /// <summary>CityHash64 of the 8 consecutive 64-byte blocks at s (HashLen33to64 with len 64).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Hash64x8<TOps>(byte* s, ulong* output) where TOps : struct, ISubBlockOps
    {
        Transpose<TOps>(Load(s), Load(s + 64), Load(s + 128), Load(s + 192), Load(s + 256), Load(s + 320), Load(s + 384), Load(s + 448),
                        out var w0, out var w1, out var w2, out var w3, out var w4, out var w5, out var w6, out var w7);
        var k2 = Vector512.Create(CityHash.K2);
        var mul = Vector512.Create(CityHash.K2 + 128);
        var nine = Vector512.Create(9UL);
        var a = TOps.MultiplyLow(w0, k2);
        var b = w1;
        var c = w5;
        var d = w4;
        var e = TOps.MultiplyLow(w2, k2);
        var f = TOps.MultiplyLow(w3, nine);
        var g = w7;
        var h = TOps.MultiplyLow(w6, mul);
        var ag = a + g;
        var u = TOps.RotateRight(ag, 43) + TOps.MultiplyLow(TOps.RotateRight(b, 30) + c, nine);
        var v = (ag ^ d) + f + Vector512<ulong>.One;
        var w = TOps.ByteSwap(TOps.MultiplyLow(u + v, mul)) + h;
        var x = TOps.RotateRight(e + f, 42) + c;
        var y = TOps.MultiplyLow(TOps.ByteSwap(TOps.MultiplyLow(v + w, mul)) + g, mul);
        var z = e + f + c;
        a = TOps.ByteSwap(TOps.MultiplyLow(x + z, mul) + y) + b;
        var t = TOps.MultiplyLow(z + a, mul) + d + h;
        b = TOps.MultiplyLow(t ^ TOps.ShiftRightLogical(t, 47), mul);
        (b + x).Store(output);
    }

    /// <summary>CityHash64 of the 8 consecutive len-byte sub-blocks at s (len 128..512, the long path: a prologue
    /// over each one's last 64 bytes, then (len - 1) / 64 blocks from its start).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void HashLongx8<TOps>(byte* s, int len, ulong* output) where TOps : struct, ISubBlockOps
    {
        var k1 = Vector512.Create(CityHash.K1);
        var length = Vector512.Create((ulong)len);
        byte* p0 = s, p1 = s + len, p2 = s + 2 * len, p3 = s + 3 * len, p4 = s + 4 * len, p5 = s + 5 * len, p6 = s + 6 * len, p7 = s + 7 * len;
        int last = len - 64;
        Transpose<TOps>(Load(p0 + last), Load(p1 + last), Load(p2 + last), Load(p3 + last),
                        Load(p4 + last), Load(p5 + last), Load(p6 + last), Load(p7 + last),
                        out var l0, out var l1, out var l2, out var l3, out var l4, out var l5, out var l6, out var l7);
        var x = l3;
        var y = l6 + l1;
        var z = HashLen16<TOps>(l2 + length, l5);
        Weak<TOps>(l0, l1, l2, l3, length, z, out var v1, out var v2);
        Weak<TOps>(l4, l5, l6, l7, y + k1, x, out var w1, out var w2);
        var first = Vector512.Create(*(ulong*)p0, *(ulong*)p1, *(ulong*)p2, *(ulong*)p3, *(ulong*)p4, *(ulong*)p5, *(ulong*)p6, *(ulong*)p7);
        x = TOps.MultiplyLow(x, k1) + first;
        for (int off = 0; off < last; off += 64)
        {
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
        var shiftMixY = y ^ TOps.ShiftRightLogical(y, 47);
        var hash = HashLen16<TOps>(HashLen16<TOps>(v1, w1) + TOps.MultiplyLow(shiftMixY, k1) + z, HashLen16<TOps>(v2, w2) + x);
        hash.Store(output);
    }
}
