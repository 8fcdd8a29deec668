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

    /// <summary>One sync: both sides take, exchange bitmaps, then chunk by chunk read, hash, compare; the backup
    /// stages the primary's divergent blocks (a full staging is written first, as the engine does); apply (unless
    /// aborted). Returns the divergent blocks.</summary>
    private ulong Sync(SyntheticDisks primary, SyntheticDisks backup, DiskBlocks p, DiskBlocks b, DiskStaging staging, bool abort = false,
                       ulong chunkBlocks = ulong.MaxValue)
    {
        p.Take(primary);
        b.Take(backup);
        ulong[] pBits = p.LocalBitmap.ToArray(), bBits = b.LocalBitmap.ToArray();
        ulong union = p.OrPeer(bBits, chunkBlocks);
        Assert.Equal(union, b.OrPeer(pBits, chunkBlocks));
        Assert.Equal(p.Chunks, b.Chunks);
        staging.Reset(b.ChunkBlocks);
        ulong divergent = 0;
        while (p.NextChunk())
        {
            Assert.True(b.NextChunk());
            Assert.Equal(p.ChunkFirst, b.ChunkFirst);
            p.ReadChunk(primary);
            b.ReadChunk(backup);
            ulong[] backupHashes = b.Hash(_hasher).ToArray();
            p.Hash(_hasher);
            ulong chunkDivergent = p.Compare(backupHashes);
            for (ulong i = 0; i < chunkDivergent; i++)
            {
                if (staging.IsFull)
                {
                    staging.Apply(b.Layout, backup);
                    staging.Clear();
                }
                staging.Stage(b, p.DivergentBlock(i), p.DivergentData(i));
            }
            divergent += chunkDivergent;
        }
        Assert.False(b.NextChunk());
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
    public void AChunkedFullSyncHoldsOneChunk_AndSendsOnlyTheDifferingBlocks()
    {
        const ulong chunk = 16;   // 64 KiB: the drives' 321 blocks go in 21 chunks
        var primary = Disks(5);
        var backup = Disks(5);
        backup.Write(0, 100 * Block, Fill(0x33, 2 * Block));   // an older copy: differs, not dirty
        backup.Write(1, Size1 - 512, Fill(0x34, 512));         // the short last block
        using var p = new DiskBlocks(new DiskLayout(primary.Drives));
        using var b = new DiskBlocks(new DiskLayout(backup.Drives));
        using var staging = new DiskStaging();
        p.MarkAll();
        b.MarkAll();
        ulong divergent = Sync(primary, backup, p, b, staging, chunkBlocks: chunk);
        Assert.Equal(256UL + 65, p.UnionBlocks);
        Assert.Equal(21UL, p.Chunks);
        Assert.Equal(3UL, divergent);
        Assert.Equal(chunk * Block, p.ReadBufferBytes);   // one chunk, not the union's 1.3 MiB
        Assert.Equal(chunk * Block, b.ReadBufferBytes);
        Assert.Equal(chunk * Block, staging.BufferBytes);
        Assert.Equal(2 + 2, backup.Writes);                // the older copy's 2, then one per run: all fitted in the staging
        Assert.True(primary.Bytes(0).SequenceEqual(backup.Bytes(0)));
        Assert.True(primary.Bytes(1).SequenceEqual(backup.Bytes(1)));
    }

    [Fact]
    public void ABackupWithAnotherDiskGetsEveryBlock_InBoundedStaging()
    {
        const ulong chunk = 7;
        var primary = Disks(6);
        var backup = Disks(60);   // nothing alike
        using var p = new DiskBlocks(new DiskLayout(primary.Drives));
        using var b = new DiskBlocks(new DiskLayout(backup.Drives));
        using var staging = new DiskStaging();
        p.MarkAll();
        b.MarkAll();
        Assert.Equal(256UL + 65, Sync(primary, backup, p, b, staging, chunkBlocks: chunk));
        Assert.Equal(chunk * Block, staging.BufferBytes);
        Assert.Equal(chunk * Block, b.ReadBufferBytes);
        Assert.True(primary.Bytes(0).SequenceEqual(backup.Bytes(0)));
        Assert.True(primary.Bytes(1).SequenceEqual(backup.Bytes(1)));
    }

    [Fact]
    public void ChunksCutTheUnionInOrder_OnBothDrives()
    {
        var disks = Disks(7);
        using var side = new DiskBlocks(new DiskLayout(disks.Drives));
        ulong[] dirty = [0, 1, 2, 63, 64, 65, 130, 255];
        foreach (ulong block in dirty) disks.GuestWrite(0, block * Block, Fill(1, 1));
        disks.GuestWrite(1, 0, Fill(2, 1));                  // global block 256: drive 1 starts on a word boundary
        disks.GuestWrite(1, 64 * Block, Fill(3, 1));         // its short last block, global 320
        side.Take(disks);
        Assert.Equal(10UL, side.OrPeer(new ulong[side.Layout.TotalWords], chunkBlocks: 3));
        Assert.Equal(4UL, side.Chunks);
        var seen = new List<ulong>();
        while (side.NextChunk())
        {
            Assert.Equal((ulong)seen.Count, side.ChunkFirst);
            side.Compare([], all: true);
            for (ulong i = 0; i < side.DivergentBlocks; i++) seen.Add(side.DivergentBlock(i));
            Assert.True(side.InChunk(side.DivergentBlock(0)));
        }
        Assert.Equal([.. dirty, 256UL, 320UL], seen);
    }

    [Fact]
    public void StagingRefusesABlockOfAnotherChunk()
    {
        var disks = Disks(8);
        using var side = new DiskBlocks(new DiskLayout(disks.Drives));
        using var staging = new DiskStaging();
        disks.GuestWrite(0, 0, Fill(1, 4 * Block));
        side.Take(disks);
        side.OrPeer(new ulong[side.Layout.TotalWords], chunkBlocks: 2);
        Assert.True(side.NextChunk());   // blocks 0 and 1
        staging.Reset(side.ChunkBlocks);
        var block = new byte[Block];
        Assert.Throws<SyncProtocolException>(() => staging.Stage(side, 2, block));   // in the union, the next chunk's
        staging.Stage(side, 1, block);
        Assert.True(side.NextChunk());   // blocks 2 and 3
        Assert.Throws<SyncProtocolException>(() => staging.Stage(side, 1, block));   // the last chunk's
        Assert.False(staging.IsFull);
        staging.Stage(side, 2, block);
        Assert.True(staging.IsFull);
        Assert.Throws<InvalidOperationException>(() => staging.Stage(side, 3, block));   // the engine writes a full staging first
        staging.Clear();
        Assert.Throws<SyncProtocolException>(() => staging.Stage(side, 2, block));   // the order holds over the whole sync
        staging.Stage(side, 3, block);
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
        Assert.True(side.NextChunk());
        staging.Reset(side.ChunkBlocks);
        var block = new byte[Block];
        Assert.Throws<SyncProtocolException>(() => staging.Stage(side, 5, block));          // not in the union
        Assert.Throws<SyncProtocolException>(() => staging.Stage(side, 2, new byte[100]));  // not a block's size
        staging.Stage(side, 3, block);
        Assert.Throws<SyncProtocolException>(() => staging.Stage(side, 2, block));          // out of order
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
