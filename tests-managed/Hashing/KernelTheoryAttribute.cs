using Plover.Hashing;
using Xunit;

namespace Plover.Tests.Hashing;

/// <summary>A theory that is skipped, with the reason, when this CPU (or runtime) cannot run the kernel.</summary>
public sealed class KernelTheoryAttribute : TheoryAttribute
{
    public KernelTheoryAttribute(HashKernel kernel)
    {
        if (!HashKernels.IsSupported(kernel))
            Skip = kernel switch
            {
                HashKernel.Avx512 => "this CPU lacks AVX-512F/DQ, so the avx512 kernel cannot run",
                HashKernel.Avx2 => "this CPU lacks AVX2, so the avx2 kernel cannot run",
                _ => $"kernel {kernel} is not supported here",
            };
    }
}
