using Plover.Hashing;
using Xunit;

namespace Plover.Tests.Hashing;

/// <summary>
/// Runs the 8-lane kernel's own code on the software model of its AVX-512 instructions, so the transpose,
/// lane bookkeeping and finish are checked even where the CPU has no AVX-512 (where the kernel itself is
/// tested through PageHasher as well).
/// </summary>
public unsafe class Avx512KernelModelTests
{
    [Fact]
    public void Software_model_follows_the_instruction_definitions()
    {
        var a = Vector(0, 1, 2, 3, 4, 5, 6, 7);
        var b = Vector(10, 11, 12, 13, 14, 15, 16, 17);
        Assert.Equal(Vector(0, 10, 2, 12, 4, 14, 6, 16), SoftwareAvx512Ops.UnpackLow(a, b));
        Assert.Equal(Vector(1, 11, 3, 13, 5, 15, 7, 17), SoftwareAvx512Ops.UnpackHigh(a, b));
        Assert.Equal(Vector(0, 1, 4, 5, 10, 11, 14, 15), SoftwareAvx512Ops.Shuffle4x128(a, b, 0x88));
        Assert.Equal(Vector(2, 3, 6, 7, 12, 13, 16, 17), SoftwareAvx512Ops.Shuffle4x128(a, b, 0xDD));
        Assert.Equal(Vector(0, 1UL << 63, 1, (1UL << 63) | 1, 2, (1UL << 63) | 2, 3, (1UL << 63) | 3),
                     SoftwareAvx512Ops.RotateRight(a, 1));
        Assert.Equal(Vector(0, 0, 0, 0, 1, 1, 1, 1), SoftwareAvx512Ops.ShiftRightLogical(a, 2));
        Assert.Equal(Vector(0, 11, 24, 39, 56, 75, 96, 119), SoftwareAvx512Ops.MultiplyLow(a, b));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Eight_lane_kernel_code_on_the_model_equals_CityHash64(bool prefetch)
    {
        using var pages = new PageSet(40, seed: 512, misalign: 8);
        byte** group = stackalloc byte*[8];
        byte** next = stackalloc byte*[8];
        ulong* hashes = stackalloc ulong[8];
        var rng = new Random(4);
        for (int round = 0; round < 6; round++)
        {
            // Random pages (repeats allowed, as in a short group), including the zero and 0xff pages.
            var chosen = new int[8];
            for (int i = 0; i < 8; i++)
            {
                chosen[i] = rng.Next(pages.PageCount);
                group[i] = pages.Base + (long)chosen[i] * 4096;
                next[i] = pages.Base + (long)rng.Next(pages.PageCount) * 4096;
            }
            Avx512PageKernel.Hash8<SoftwareAvx512Ops>(group, next, hashes, prefetch);
            for (int i = 0; i < 8; i++)
                Assert.Equal(pages.Expected[chosen[i]], hashes[i]);
        }
    }

    [Fact]
    public void Eight_lane_kernel_code_on_the_model_gives_the_known_page_answers()
    {
        using var pages = new PageSet(3, seed: 1);
        new Span<byte>(pages.Base, 4096).Clear();
        new Span<byte>(pages.Base + 4096, 4096).Fill(0xff);
        CityHashTests.Pattern(4096).CopyTo(new Span<byte>(pages.Base + 8192, 4096));
        byte** group = stackalloc byte*[8];
        ulong* hashes = stackalloc ulong[8];
        for (int i = 0; i < 8; i++)
            group[i] = pages.Base + (i % 3) * 4096L;
        Avx512PageKernel.Hash8<SoftwareAvx512Ops>(group, group, hashes, prefetch: false);
        ulong[] known = [0x06c5df0488653d58UL, 0x2b5e63a363df7394UL, 0x8fc9c0fa8db60258UL];
        for (int i = 0; i < 8; i++)
            Assert.Equal(known[i % 3], hashes[i]);
    }

    private static System.Runtime.Intrinsics.Vector512<ulong> Vector(params ulong[] values) =>
        System.Runtime.Intrinsics.Vector512.Create(values);
}
