using Plover.Hashing;
using Plover.Sync;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>
/// The disk part of a sync without the wire (issue 15 item 3): two replicas' drives, their dirty blocks ORed, the
/// union hashed with the RAM's hasher on both sides, only divergent blocks staged and applied, and afterwards the
/// backup's drives equal the primary's. An abort keeps the backup's drives and the taken dirt.
/// </summary>
public sealed class DiskBlocksTests : IDisposable
{
    private const int Block = 4096;
    private const ulong Size0 = 1 << 20, Size1 = (256 << 10) + 512;   // drive 1 ends in a short block
    private readonly PageHasher _hasher = new(2);

    private static SyntheticDisks Disks(int seed)
    {
        var disks = new SyntheticDisks(("data0", Size0), ("data1", Size1));
        new Random(seed).NextBytes(disks.Bytes(0));
        new Random(seed + 1).NextBytes(disks.Bytes(1));
        return disks;
    }

    private static byte[] Fill(byte value, int length) => Enumerable.Repeat(value, length).ToArray();

    /// <summary>One sync: both sides take, exchange bitmaps, read, hash, compare; the backup stages the primary's
    /// divergent blocks; apply (unless aborted). Returns the divergent blocks.</summary>
    private ulong Sync(SyntheticDisks primary, SyntheticDisks backup, DiskBlocks p, DiskBlocks b, DiskStaging staging, bool abort = false)
    {
        p.Take(primary);
        b.Take(backup);
        ulong[] pBits = p.LocalBitmap.ToArray(), bBits = b.LocalBitmap.ToArray();
        ulong union = p.OrPeer(bBits);
        Assert.Equal(union, b.OrPeer(pBits));
        p.ReadUnion(primary);
        b.ReadUnion(backup);
        ulong[] backupHashes = b.Hash(_hasher).ToArray();
        p.Hash(_hasher);
        ulong divergent = p.Compare(backupHashes);
        staging.Reset(b.UnionBlocks);
        for (ulong i = 0; i < divergent; i++)
        {
            staging.Stage(b.Layout, b.Union, p.DivergentBlock(i), p.DivergentData(i));
        }
        if (abort) return divergent;
        staging.Apply(b.Layout, backup);
        p.Completed();
        b.Completed();
        return divergent;
    }

    [Fact]
    public void OnlyDivergentBlocksTravel_AndTheBackupEndsEqual()
    {
        var primary = Disks(1);
        var backup = Disks(1);
        var layout = new DiskLayout(primary.Drives);
        using var p = new DiskBlocks(layout);
        using var b = new DiskBlocks(new DiskLayout(backup.Drives));
        using var staging = new DiskStaging();

        // alike on both (the same inputs): dirty, not divergent
        foreach (var disks in new[] { primary, backup })
        {
            disks.GuestWrite(0, 0, Fill(0xaa, 512));
            disks.GuestWrite(0, 8 * Block, Fill(0xbb, 3 * Block));
        }
        // different bytes on each side, only on the primary, only on the backup, across two blocks, the short block
        primary.GuestWrite(0, 20 * Block, Fill(0x01, Block));
        backup.GuestWrite(0, 20 * Block, Fill(0x02, Block));
        primary.GuestWrite(0, 40 * Block + 100, Fill(0x03, 10));
        backup.GuestWrite(1, 5 * Block, Fill(0x04, Block));
        primary.GuestWrite(1, 10 * Block - 4, Fill(0x05, 8));
        primary.GuestWrite(1, Size1 - 512, Fill(0x06, 512));

        ulong divergent = Sync(primary, backup, p, b, staging);

        Assert.Equal(1UL + 3 + 1 + 1 + 1 + 2 + 1, p.UnionBlocks);
        Assert.Equal(1UL + 1 + 1 + 2 + 1, divergent);
        Assert.True(primary.Bytes(0).SequenceEqual(backup.Bytes(0)));
        Assert.True(primary.Bytes(1).SequenceEqual(backup.Bytes(1)));
        Assert.Equal(5, backup.Writes);   // blocks 9-10 of drive 1 in one write

        // the apply is not the guest's write: the next sync finds nothing
        Assert.Equal(0UL, Sync(primary, backup, p, b, staging));
        Assert.Equal(0UL, p.UnionBlocks);
    }

    [Fact]
    public void AnAbortedSyncLeavesTheBackupsDrivesAndKeepsTheDirtForTheNext()
    {
        var primary = Disks(2);
        var backup = Disks(2);
        using var p = new DiskBlocks(new DiskLayout(primary.Drives));
        using var b = new DiskBlocks(new DiskLayout(backup.Drives));
        using var staging = new DiskStaging();
        primary.GuestWrite(0, 3 * Block, Fill(0x11, Block));
        backup.GuestWrite(1, 7 * Block, Fill(0x22, Block));
        byte[] before0 = backup.Bytes(0).ToArray(), before1 = backup.Bytes(1).ToArray();

        Assert.Equal(2UL, Sync(primary, backup, p, b, staging, abort: true));
        Assert.True(before0.AsSpan().SequenceEqual(backup.Bytes(0)));
        Assert.True(before1.AsSpan().SequenceEqual(backup.Bytes(1)));

        // QEMU's bitmaps were cleared by the take; the next sync still covers both blocks
        Assert.Equal(2UL, Sync(primary, backup, p, b, staging));
        Assert.True(primary.Bytes(0).SequenceEqual(backup.Bytes(0)));
        Assert.True(primary.Bytes(1).SequenceEqual(backup.Bytes(1)));
    }

    [Fact]
    public void AFullSyncComparesEveryBlock_AndSendsOnlyTheDifferingOnes()
    {
        var primary = Disks(3);
        var backup = Disks(3);
        backup.Write(0, 100 * Block, Fill(0x33, 2 * Block));   // an older copy: differs, not dirty
        using var p = new DiskBlocks(new DiskLayout(primary.Drives));
        using var b = new DiskBlocks(new DiskLayout(backup.Drives));
        using var staging = new DiskStaging();
        p.MarkAll();
        b.MarkAll();
        ulong divergent = Sync(primary, backup, p, b, staging);
        Assert.Equal(Size0 / Block + (Size1 + Block - 1) / Block, p.UnionBlocks);
        Assert.Equal(2UL, divergent);
        Assert.True(primary.Bytes(0).SequenceEqual(backup.Bytes(0)));
    }

    [Fact]
    public void StagingRefusesWhatThePrimaryMustNotSend()
    {
        var disks = Disks(4);
        var layout = new DiskLayout(disks.Drives);
        using var side = new DiskBlocks(layout);
        using var staging = new DiskStaging();
        disks.GuestWrite(0, 2 * Block, Fill(1, 2 * Block));
        side.Take(disks);
        side.OrPeer(new ulong[layout.TotalWords]);
        staging.Reset(side.UnionBlocks);
        var block = new byte[Block];
        Assert.Throws<SyncProtocolException>(() => staging.Stage(layout, side.Union, 5, block));          // not in the union
        Assert.Throws<SyncProtocolException>(() => staging.Stage(layout, side.Union, 2, new byte[100]));  // not a block's size
        staging.Stage(layout, side.Union, 3, block);
        Assert.Throws<SyncProtocolException>(() => staging.Stage(layout, side.Union, 2, block));          // out of order
        var pastTheEnd = new ulong[layout.TotalWords];
        pastTheEnd[layout.TotalWords - 1] = 1UL << 63;                                                  // drive 1 has 65 blocks
        Assert.Throws<SyncProtocolException>(() => side.OrPeer(pastTheEnd));
    }

    [Fact]
    public void ADriveWhoseBlocksAreNotPagesIsRefused()
    {
        Assert.Throws<ArgumentException>(() => new DiskLayout([new GuestDrive("d", 1 << 20, 65536)]));
    }

    public void Dispose() => _hasher.Dispose();
}
