using Plover.Transport;
using Xunit;

namespace Plover.Tests.Transport;

public sealed class PayloadArenaTests
{
    private static byte[] Payload(long index) => Enumerable.Range(0, 1000).Select(i => (byte)(index * 7 + i)).ToArray();

    /// <summary>Copies entries from..to into the arena, one 1000-byte payload each.</summary>
    private static Dictionary<long, ReadOnlyMemory<byte>> Fill(PayloadArena arena, long from, long to)
    {
        var copies = new Dictionary<long, ReadOnlyMemory<byte>>();
        for (long i = from; i <= to; i++) copies[i] = arena.Copy(Payload(i), i);
        return copies;
    }

    [Fact]
    public void ASlabIsReusedOnlyOnceEveryEntryInItIsCompacted()
    {
        long firstRetained = 1;
        var arena = new PayloadArena(() => firstRetained);
        int perSlab = PayloadArena.SlabSize / 1000;
        var kept = Fill(arena, 1, 3 * perSlab);   // three slabs, nothing compacted: nothing may be reused
        Assert.Equal(3, arena.Slabs);

        firstRetained = perSlab + 1;               // the first slab's entries are compacted away
        var more = Fill(arena, 3 * perSlab + 1, 4 * perSlab);
        Assert.Equal(3, arena.Slabs);              // the fourth slab's worth went into the first
        for (long i = perSlab + 1; i <= 3 * perSlab; i++)
            Assert.True(kept[i].Span.SequenceEqual(Payload(i)), $"retained entry {i} was overwritten");
        foreach (var (i, m) in more) Assert.True(m.Span.SequenceEqual(Payload(i)));

        Fill(arena, 4 * perSlab + 1, 5 * perSlab); // the second slab still holds retained entries: a new one
        Assert.Equal(4, arena.Slabs);
    }

    [Fact]
    public void WithoutACompactionPointEveryPayloadHasItsOwnArray()
    {
        var arena = new PayloadArena();
        var a = arena.Copy(Payload(1), 1);
        var b = arena.Copy(Payload(2), 2);
        Assert.Equal(0, arena.Slabs);
        Assert.True(a.Span.SequenceEqual(Payload(1)) && b.Span.SequenceEqual(Payload(2)));
        Assert.True(arena.Copy([], 3).IsEmpty);
    }

    [Fact]
    public void SlabsAreNotOnTheGcHeap()
    {
        // 40 slabs of log payloads: on the large object heap they brought full collections while the log grew.
        long firstRetained = 1;
        var arena = new PayloadArena(() => firstRetained);
        var payload = Payload(1);
        int count = 40 * (PayloadArena.SlabSize / payload.Length);
        arena.Copy(payload, 1);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 2; i <= count; i++) arena.Copy(payload, i);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(arena.Slabs >= 40, $"{arena.Slabs} slabs");
        Assert.True(allocated < 64 * 1024, $"{allocated} bytes allocated on the GC heap for {arena.Slabs} slabs");
    }
}
