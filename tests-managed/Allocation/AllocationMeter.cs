namespace Plover.Tests.Allocation;

/// <summary>Bytes allocated and garbage collections by the whole process between <see cref="Start"/> and now.</summary>
internal readonly struct AllocationMeter
{
    private readonly long _bytes;
    private readonly int _gen0;

    private AllocationMeter(long bytes, int gen0)
    {
        _bytes = bytes;
        _gen0 = gen0;
    }

    public static AllocationMeter Start() => new(GC.GetTotalAllocatedBytes(precise: true), GC.CollectionCount(0));

    public long Bytes => GC.GetTotalAllocatedBytes(precise: true) - _bytes;
    public int Collections => GC.CollectionCount(0) - _gen0;
}
