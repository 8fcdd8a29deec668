using Plover.Sync;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>The primary's copy of a sync's pages before its early resume (<see cref="PageSnapshot"/>).</summary>
public unsafe class PageSnapshotTests
{
    /// <summary>Union sizes vary from sync to sync; a buffer grown to each new largest one would be fresh memory every
    /// time (first-touch faults cost more than the copy). Grown to a power of two of pages, it is reused.</summary>
    [Fact]
    public void Growing_counts_reuse_one_buffer_and_every_copy_matches_the_guests_page()
    {
        var memory = new SyntheticGuestMemory(("pc.ram", 64UL << 20));
        memory.FillRandom(3);
        var layout = new SyncLayout(memory.Blocks);
        using var workers = new PageWorkers(2);
        using var snapshot = new PageSnapshot();
        var bits = new NativeBuffer<ulong>();
        ulong* set = bits.Ensure(layout.TotalWords);
        byte* first = null;
        foreach (ulong count in new ulong[] { 2500, 2600, 3000, 4096 })
        {
            new Span<ulong>(set, (int)layout.TotalWords).Clear();
            for (ulong i = 0; i < count; i++) set[i * 3 / 64] |= 1UL << (int)(i * 3 % 64);   // every third page
            snapshot.Take(layout, set, count, workers);
            if (first == null) first = snapshot.Data;
            Assert.True(first == snapshot.Data, $"the buffer was allocated again for {count} pages");
            Assert.Equal(4096UL * GuestRamBlock.PageSize, snapshot.CapacityBytes);
            for (ulong i = 0; i < count; i += 97)
                Assert.True(new ReadOnlySpan<byte>(snapshot.PageAddress(i * 3), GuestRamBlock.PageSize)
                    .SequenceEqual(new ReadOnlySpan<byte>(layout.PageAddress(i * 3), GuestRamBlock.PageSize)), $"page {i * 3}");
        }
        bits.Dispose();
    }
}
