using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.Intrinsics;
using Plover.Hashing;
using Plover.Sync;
using Plover.Tests.Hashing;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>The sub-block kernel's instructions in software (the page kernel's model plus a byte swap written
/// from VPSHUFB's definition), so its code runs, slowly, on CPUs without AVX-512.</summary>
internal readonly struct SoftwareSubBlockOps : ISubBlockOps
{
    public static Vector512<ulong> ByteSwap(Vector512<ulong> v)
    {
        // vpshufb: byte j of each 128-bit lane takes byte control[j] & 15 of the same lane; the control reverses
        // each qword, so every element is its own bytes in reverse order
        Span<ulong> e = stackalloc ulong[8];
        for (int i = 0; i < 8; i++) e[i] = BinaryPrimitives.ReverseEndianness(v[i]);
        return Vector512.Create((ReadOnlySpan<ulong>)e);
    }

    public static Vector512<ulong> UnpackLow(Vector512<ulong> a, Vector512<ulong> b) => SoftwareAvx512Ops.UnpackLow(a, b);
    public static Vector512<ulong> UnpackHigh(Vector512<ulong> a, Vector512<ulong> b) => SoftwareAvx512Ops.UnpackHigh(a, b);
    public static Vector512<ulong> Shuffle4x128(Vector512<ulong> a, Vector512<ulong> b, [ConstantExpected] byte control) =>
        SoftwareAvx512Ops.Shuffle4x128(a, b, control);
    public static Vector512<ulong> RotateRight(Vector512<ulong> v, [ConstantExpected] byte count) => SoftwareAvx512Ops.RotateRight(v, count);
    public static Vector512<ulong> ShiftRightLogical(Vector512<ulong> v, [ConstantExpected] byte count) => SoftwareAvx512Ops.ShiftRightLogical(v, count);
    public static Vector512<ulong> MultiplyLow(Vector512<ulong> a, Vector512<ulong> b) => SoftwareAvx512Ops.MultiplyLow(a, b);
}

/// <summary>
/// The 8-lane sub-block kernel is bit-exact CityHash64 of each sub-block: its code on the software model (every
/// machine), on the real AVX-512 instructions (where the CPU has them), and the dispatcher for every size.
/// </summary>
public unsafe class SubBlockKernelTests
{
    public static TheoryData<int> VectorSizes() => new() { 64, 128, 256, 512 };

    private static IEnumerable<int> PageIndices(PageSet pages) => Enumerable.Range(0, pages.PageCount);

    private static void Check(PageSet pages, int blockBytes, Action<IntPtr, IntPtr> hash)
    {
        int perPage = 4096 / blockBytes;
        var got = new ulong[perPage];
        foreach (int p in PageIndices(pages))
        {
            byte* page = pages.Base + p * 4096;
            fixed (ulong* g = got) hash((IntPtr)page, (IntPtr)g);
            for (int i = 0; i < perPage; i++)
                Assert.True(CityHash.Hash64(page + i * blockBytes, (nuint)blockBytes) == got[i], $"page {p} sub-block {i} of {blockBytes} bytes");
        }
    }

    [Theory]
    [MemberData(nameof(VectorSizes))]
    public void KernelCode_OnTheSoftwareModel_EqualsCityHash64(int blockBytes)
    {
        using var pages = new PageSet(12, seed: blockBytes, misalign: 8);   // zero and all-0xff pages among them
        Check(pages, blockBytes, (page, output) => SubBlockKernel.HashPage<SoftwareSubBlockOps>((byte*)page, blockBytes, (ulong*)output));
    }

    [Theory]
    [MemberData(nameof(VectorSizes))]
    public void KernelCode_OnAvx512_EqualsCityHash64(int blockBytes)
    {
        if (!SubBlockKernel.IsSupported) return;   // no AVX-512F/DQ/BW here: the model test above covers the code
        using var pages = new PageSet(200, seed: 7 + blockBytes);
        Check(pages, blockBytes, (page, output) => SubBlockKernel.HashPage<SubBlockAvx512Ops>((byte*)page, blockBytes, (ulong*)output));
    }

    [Theory]
    [InlineData(64)]
    [InlineData(128)]
    [InlineData(256)]
    [InlineData(512)]
    [InlineData(1024)]
    public void Dispatcher_EqualsCityHash64_AtEverySize(int blockBytes)
    {
        using var pages = new PageSet(40, seed: 3, misalign: 1);
        Check(pages, blockBytes, (page, output) => SubBlockKernel.HashPage((byte*)page, blockBytes, (ulong*)output));
        Check(pages, blockBytes, (page, output) => SubBlockKernel.HashPageScalar((byte*)page, blockBytes, (ulong*)output));
    }
}
