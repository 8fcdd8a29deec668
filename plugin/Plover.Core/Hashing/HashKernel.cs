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

    /// <summary>Forces a kernel for the exported hash functions (tests, benchmarks): scalar, avx2 or avx512.</summary>
    public const string EnvironmentVariable = "PLOVER_HASH_KERNEL";

    /// <summary>The kernel a request names (null or empty: the best one). False, with a message, when the name is
    /// unknown or this CPU or build cannot run that kernel.</summary>
    public static bool TryResolve(string? requested, out HashKernel kernel, out string? error)
    {
        error = null;
        if (string.IsNullOrWhiteSpace(requested))
        {
            kernel = Best;
            return true;
        }
        if (!TryParse(requested, out kernel))
        {
            error = $"{EnvironmentVariable}='{requested}' is not a hash kernel (scalar, avx2, avx512)";
            return false;
        }
        if (!IsSupported(kernel))
        {
            error = $"{EnvironmentVariable}={Name(kernel)} refused: this CPU or this build of the library cannot run " +
                    $"it (best here: {Name(Best)})";
            return false;
        }
        return true;
    }

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
