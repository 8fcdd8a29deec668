using System.Runtime.InteropServices;
using Plover.Hashing;

namespace Plover.Native.Exports;

/// <summary>
/// C exports of the page hashing engine (interop/plover_abi.h):
///   uint64_t plover_cityhash64(const uint8_t *data, size_t len);
///   int64_t  plover_hash_pages(const uint8_t *base, uint64_t page_count, const uint64_t *dirty_bitmap,
///                              uint64_t *hashes_out, int32_t threads);
///   int32_t  plover_hash_kernel(void);   kernel in use: 0 scalar, 1 avx2, 2 avx512, or a negative errno when
///                                        PLOVER_HASH_KERNEL names a kernel this CPU/build refuses
/// PLOVER_HASH_KERNEL=scalar|avx2|avx512 is read once, on first use. No exception leaves an export.
/// </summary>
internal static unsafe class HashExports
{
    private const int EINVAL = 22;
    private const int EIO = 5;
    private const int ENOTSUP = 95;

    private static readonly HashKernel Kernel;
    private static readonly int KernelError; // 0, or the negative errno every hash_pages call returns
    private static readonly PageHasher?[] Hashers = new PageHasher?[PageHasher.MaxThreads + 1]; // one per thread count
    private static readonly Lock HashersLock = new();

    static HashExports()
    {
        string? requested = Environment.GetEnvironmentVariable(HashKernels.EnvironmentVariable);
        if (HashKernels.TryResolve(requested, out Kernel, out string? error))
            return;
        KernelError = HashKernels.TryParse(requested, out _) ? -ENOTSUP : -EINVAL;
        Console.Error.WriteLine($"plover: {error}");
    }

    /// <summary>CityHash64 v1.1.1 of len bytes; a NULL data is hashed as the empty input.</summary>
    [UnmanagedCallersOnly(EntryPoint = "plover_cityhash64")]
    public static ulong CityHash64(byte* data, nuint len)
    {
        try
        {
            return data == null ? CityHash.Hash64(ReadOnlySpan<byte>.Empty) : CityHash.Hash64(data, len);
        }
        catch (Exception)
        {
            return 0; // unreachable in practice: Hash64 only reads memory
        }
    }

    /// <summary>Hashes the selected 4 KiB pages (NULL bitmap: all) into hashes_out in page order; threads 0 means
    /// all cores. Returns the number of hashes written or a negative errno.</summary>
    [UnmanagedCallersOnly(EntryPoint = "plover_hash_pages")]
    public static long HashPages(byte* basePtr, ulong pageCount, ulong* dirtyBitmap, ulong* hashesOut, int threads)
    {
        try
        {
            if (threads < 0 || threads > PageHasher.MaxThreads || hashesOut == null)
                return -EINVAL;
            if (pageCount > 0 && basePtr == null)
                return -EINVAL;
            if (pageCount > (ulong)(long.MaxValue / PageHasher.PageSize))
                return -EINVAL;
            if (KernelError != 0)
                return KernelError;
            if (pageCount == 0)
                return 0;
            return HasherFor(threads).HashPages(basePtr, pageCount, dirtyBitmap, hashesOut);
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"plover: plover_hash_pages failed: {e.Message}");
            return -EIO;
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "plover_hash_kernel")]
    public static int HashKernelInUse()
    {
        try
        {
            return KernelError != 0 ? KernelError : (int)Kernel;
        }
        catch (Exception)
        {
            return -EIO;
        }
    }

    private static PageHasher HasherFor(int threads)
    {
        int count = threads == 0 ? Math.Min(Environment.ProcessorCount, PageHasher.MaxThreads) : threads;
        PageHasher? hasher = Volatile.Read(ref Hashers[count]);
        if (hasher != null)
            return hasher;
        lock (HashersLock)
        {
            hasher = Hashers[count] ??= new PageHasher(count, Kernel);
            return hasher;
        }
    }
}
