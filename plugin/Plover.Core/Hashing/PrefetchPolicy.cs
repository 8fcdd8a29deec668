namespace Plover.Hashing;

/// <summary>
/// Compile-time switch for software prefetch inside the kernels: each kernel is instantiated once per policy,
/// so the non-prefetching copy carries neither the prefetches nor the registers that hold the next pages.
/// Prefetch gains about +50% from DRAM and costs about 30% on cache-resident pages (measured with ./build.sh bench hash).
/// </summary>
internal interface IPrefetchPolicy
{
    static abstract bool Enabled { get; }
}

internal readonly struct PrefetchOn : IPrefetchPolicy
{
    public static bool Enabled => HashKernels.CanPrefetch;
}

internal readonly struct PrefetchOff : IPrefetchPolicy
{
    public static bool Enabled => false;
}

/// <summary>When PageHasher asks the kernels to prefetch the next pages.</summary>
public enum HashPrefetch
{
    /// <summary>Prefetch when the selected pages are too many to be cache-resident (see PageHasher.PrefetchMinBytes).</summary>
    Auto = 0,
    Always = 1,
    Never = 2,
}
