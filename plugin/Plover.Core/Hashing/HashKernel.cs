using System.Runtime.Intrinsics.X86;

namespace Plover.Hashing;

/// <summary>The page kernels. The numeric values are the ABI's (plover_hash_kernel: 0 scalar, 1 avx2, 2 avx512).</summary>
public enum HashKernel
{
    Scalar = 0,
    Avx2 = 1,
    Avx512 = 2,
}

/// <summary>Which kernels this process can run. Under NativeAOT the IsSupported checks are compile-time constants,
/// so a build for x86-64-v2 contains only the scalar kernel and a v4 build contains all three.</summary>
public static class HashKernels
{
    public static bool IsSupported(HashKernel kernel) => kernel switch
    {
        HashKernel.Scalar => true,
        HashKernel.Avx2 => Avx2PageKernel.IsSupported,
        HashKernel.Avx512 => Avx512PageKernel.IsSupported,
        _ => false,
    };

    /// <summary>The fastest kernel this CPU and build can run.</summary>
    public static HashKernel Best =>
        Avx512PageKernel.IsSupported ? HashKernel.Avx512 :
        Avx2PageKernel.IsSupported ? HashKernel.Avx2 : HashKernel.Scalar;

    /// <summary>Parses "scalar", "avx2" or "avx512" (case-insensitive).</summary>
    public static bool TryParse(string? text, out HashKernel kernel)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case "scalar": kernel = HashKernel.Scalar; return true;
            case "avx2": kernel = HashKernel.Avx2; return true;
            case "avx512": kernel = HashKernel.Avx512; return true;
            default: kernel = HashKernel.Scalar; return false;
        }
    }

    public static string Name(HashKernel kernel) => kernel switch
    {
        HashKernel.Scalar => "scalar",
        HashKernel.Avx2 => "avx2",
        HashKernel.Avx512 => "avx512",
        _ => kernel.ToString(),
    };

    /// <summary>Software prefetch is an x86 SSE instruction; elsewhere the kernels simply do not prefetch.</summary>
    internal static bool CanPrefetch => Sse.IsSupported;
}
