using System.Buffers.Binary;
using Google.Protobuf;
using Plover.Sync;
using Plover.Transport;
using Plover.Wire;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>
/// An authenticated but misbehaving primary (the test speaks for it over the real connection) sends frames a
/// correct primary never would. The backup must abort with a reason naming the problem and keep its state.
/// </summary>
public unsafe class HostilePrimaryTests
{
    private static readonly (string, ulong)[] Layout = [("pc.ram", 1UL << 20)];

    /// <summary>Runs the backup against the test's primary up to the page transfer, then sends what attack gives.</summary>
    private static SyncStats RunAgainst(Action<SyncConnection, ulong[]> attack)
    {
        using var pair = new SyncPair(Layout, backupOptions: new SyncOptions { Timeout = TimeSpan.FromSeconds(5), Log = _ => { } });
        for (ulong p = 0; p < 256; p += 3) pair.BackupMemory.Write(0, p, 0, p + 1);   // backup dirtied pages 0, 3, 6...
        var old = pair.BackupMemory.Snapshot();
        var connection = pair.Primary.Connection!;
        pair.Primary.Connection = null;   // the test speaks for the primary
        var backup = pair.Backup.RunAsync(new SyncRequest(1, 10));
        connection.Send(new RawBody(FrameType.SyncBegin, new SyncBegin { Epoch = 1, LogIndex = 10 }, []));

        var frame = connection.Read(TimeSpan.FromSeconds(5));
        Assert.Equal(FrameType.SyncBitmap, frame.Type);
        var theirs = SyncBitmap.Parser.ParseFrom(frame.Header);
        var union = new ulong[theirs.TotalWords];
        fixed (ulong* u = union)
            Assert.True(BitmapCodec.TryDecodeOr(frame.Tail, theirs.Encoding, u, theirs.TotalWords, out _, out _));
        var empty = new SyncBitmap { Epoch = 1, LogIndex = 10, Encoding = BitmapEncoding.BitmapRuns, TotalWords = theirs.TotalWords, LayoutHash = theirs.LayoutHash, Protocol = SyncProtocol.Version };
        connection.Send(new RawBody(FrameType.SyncBitmap, empty, []));
        ulong unionPages = (ulong)union.Sum(w => (long)ulong.PopCount(w));
        for (ulong got = 0; got < unionPages;)
        {
            frame = connection.Read(TimeSpan.FromSeconds(5));
            Assert.Equal(FrameType.SyncHashes, frame.Type);
            got += SyncHashes.Parser.ParseFrom(frame.Header).Count;
        }
        attack(connection, union);
        var stats = backup.Result;
        Assert.Equal(SyncOutcome.Aborted, stats.Outcome);
        Assert.True(pair.BackupMemory.Matches(old), "the backup's memory changed");
        Assert.True(pair.BackupVm.Running);
        connection.Dispose();
        return stats;
    }

    private static byte[] Pages(params ulong[] numbers)
    {
        var tail = new byte[numbers.Length * (8 + 4096)];
        for (int i = 0; i < numbers.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(tail.AsSpan(i * 8), numbers[i]);
        tail.AsSpan(numbers.Length * 8).Fill(0xEE);
        return tail;
    }

    [Fact]
    public void ABeginForAnotherCut_Aborts()
    {
        using var pair = new SyncPair(Layout, backupOptions: new SyncOptions { Timeout = TimeSpan.FromSeconds(5), Log = _ => { } });
        var old = pair.BackupMemory.Snapshot();
        var connection = pair.Primary.Connection!;
        pair.Primary.Connection = null;
        var backup = pair.Backup.RunAsync(new SyncRequest(1, 10));
        connection.Send(new RawBody(FrameType.SyncBegin, new SyncBegin { Epoch = 1, LogIndex = 11 }, []));
        var stats = backup.Result;
        Assert.Equal(SyncOutcome.Aborted, stats.Outcome);
        Assert.Contains("the primary runs sync e1 at log index 11", stats.Error);
        Assert.True(pair.BackupMemory.Matches(old));
        connection.Dispose();
    }

    [Fact]
    public void PageOutsideTheUnion_Aborts()
    {
        var stats = RunAgainst((c, _) => c.Send(new RawBody(FrameType.SyncPages, new SyncPages { Epoch = 1, Count = 1 }, Pages(1))));
        Assert.Contains("not a page of the union", stats.Error);
    }

    [Fact]
    public void PagePastTheEndOfRam_Aborts()
    {
        var stats = RunAgainst((c, _) => c.Send(new RawBody(FrameType.SyncPages, new SyncPages { Epoch = 1, Count = 1 }, Pages(1UL << 40))));
        Assert.Contains("not a page of the union", stats.Error);
    }

    [Fact]
    public void PagesOutOfOrder_Abort()
    {
        var stats = RunAgainst((c, _) => c.Send(new RawBody(FrameType.SyncPages, new SyncPages { Epoch = 1, Count = 2 }, Pages(6, 3))));
        Assert.Contains("out of order", stats.Error);
    }

    [Fact]
    public void PageCountNotMatchingTheTail_Aborts()
    {
        var stats = RunAgainst((c, _) => c.Send(new RawBody(FrameType.SyncPages, new SyncPages { Epoch = 1, Count = 3 }, Pages(0, 3))));
        Assert.Contains("page frame", stats.Error);
    }

    [Fact]
    public void HugeDeviceState_Aborts()
    {
        var stats = RunAgainst((c, _) => c.Send(new RawBody(FrameType.SyncDeviceState, new SyncDeviceState { Epoch = 1, TotalLength = 1UL << 40 }, [1, 2])));
        Assert.Contains("device state frame", stats.Error);
    }

    [Fact]
    public void FewerPagesThanAnnounced_Aborts()
    {
        var stats = RunAgainst((c, _) =>
        {
            c.Send(new RawBody(FrameType.SyncPages, new SyncPages { Epoch = 1, Count = 1 }, Pages(3)));
            c.Send(new RawBody(FrameType.SyncDeviceState, new SyncDeviceState { Epoch = 1, TotalLength = 2, PagesSent = 2 }, [1, 2]));
        });
        Assert.Contains("primary sent 2 pages, 1 arrived", stats.Error);
    }

    [Fact]
    public void UnexpectedFrameType_Aborts()
    {
        var stats = RunAgainst((c, _) => c.Send(new RawBody(FrameType.SyncAck, new SyncAck { Epoch = 1 }, [])));
        Assert.Contains("expected a SyncPages or SyncDeviceState frame", stats.Error);
    }

    // ---------------------------------------------------------------- sub-block mode (protocol 2)

    /// <summary>The divergent list (a DIVERGENT bitmap, raw encoding) naming union indices.</summary>
    private static RawBody DivergentList(ulong unionPages, ulong[] indices, uint blockBytes = 64, uint chunk = 1024, ulong? setBits = null, ulong? words = null,
                                         uint hashBytes = 8)
    {
        ulong w = words ?? (unionPages + 63) / 64;
        var tail = new byte[w * 8];
        foreach (ulong k in indices) tail[k / 8] |= (byte)(1 << (int)(k % 8));
        var header = new SyncBitmap
        {
            Epoch = 1, LogIndex = 10, Encoding = BitmapEncoding.BitmapRaw, TotalWords = w, SetBits = setBits ?? (ulong)indices.Length,
            Kind = BitmapKind.BitmapDivergent, Protocol = SyncProtocol.Version, SubBlockBytes = blockBytes, ChunkPages = chunk,
            SubBlockHashBytes = hashBytes,
        };
        return new RawBody(FrameType.SyncBitmap, header, tail);
    }

    /// <summary>Reads the backup's sub-block hash frames for pages divergent pages.</summary>
    private static void ReadSubBlockHashes(SyncConnection c, ulong pages)
    {
        for (ulong got = 0; got < pages;)
        {
            var frame = c.Read(TimeSpan.FromSeconds(5));
            Assert.Equal(FrameType.SyncHashes, frame.Type);
            var h = SyncHashes.Parser.ParseFrom(frame.Header);
            Assert.NotEqual(0U, h.SubBlockBytes);
            got += h.Count;
        }
    }

    /// <summary>A sub-block page frame: each page's mask (maskBytes, little-endian), its page hash (pageHash) and
    /// blocks * blockBytes of 0xEE.</summary>
    private static RawBody SubBlockPages(ulong first, int blockBytes, (ulong Mask, int Blocks)[] pages, uint? count = null, uint? blocks = null, int extra = 0, int maskBytes = 0,
                                         ulong pageHash = 0)
    {
        if (maskBytes == 0) maskBytes = (4096 / blockBytes + 7) / 8;
        var tail = new List<byte>();
        foreach (var (mask, n) in pages)
        {
            for (int b = 0; b < maskBytes; b++) tail.Add((byte)(mask >> (8 * b)));
            tail.AddRange(BitConverter.GetBytes(pageHash));
            tail.AddRange(Enumerable.Repeat((byte)0xEE, n * blockBytes));
        }
        tail.AddRange(new byte[Math.Max(0, extra)]);
        var bytes = tail.ToArray();
        if (extra < 0) bytes = bytes[..^(-extra)];
        var header = new SyncPages
        {
            Epoch = 1, Count = count ?? (uint)pages.Length, SubBlockBytes = (uint)blockBytes, FirstIndex = first,
            Blocks = blocks ?? (uint)pages.Sum(p => p.Blocks),
        };
        return new RawBody(FrameType.SyncPages, header, bytes);
    }

    private static ulong UnionPages(ulong[] union) => (ulong)union.Sum(w => (long)ulong.PopCount(w));

    /// <summary>Sends the list of union indices (64-byte sub-blocks unless told), reads the backup's sub-block
    /// hashes, then sends what pages gives.</summary>
    private static SyncStats RunSubBlocks(ulong[] list, Action<SyncConnection> pages, uint blockBytes = 64, uint chunk = 1024, uint hashBytes = 8) =>
        RunAgainst((c, union) =>
        {
            c.Send(DivergentList(UnionPages(union), list, blockBytes, chunk, hashBytes: hashBytes));
            ReadSubBlockHashes(c, Math.Min(chunk, (ulong)list.Length));
            pages(c);
        });

    [Fact]
    public void DivergentList_NamingPagesPastTheUnion_Aborts()
    {
        var stats = RunAgainst((c, union) => c.Send(DivergentList(UnionPages(union), [UnionPages(union)])));
        Assert.Contains("past the", stats.Error);
    }

    [Fact]
    public void DivergentList_WithAWrongCount_Aborts()
    {
        var stats = RunAgainst((c, union) => c.Send(DivergentList(UnionPages(union), [1, 2], setBits: 3)));
        Assert.Contains("bits set, it claims 3", stats.Error);
    }

    [Theory]
    [InlineData(0u, 1024u)]
    [InlineData(48u, 1024u)]
    [InlineData(2048u, 1024u)]
    [InlineData(64u, 0u)]
    [InlineData(64u, 65537u)]
    [InlineData(64u, 1025u)]     // a pipelined round of larger chunks could fill both socket buffers and stall
    public void DivergentList_WithABadSubBlockSizeOrChunk_Aborts(uint blockBytes, uint chunk)
    {
        var stats = RunAgainst((c, union) => c.Send(DivergentList(UnionPages(union), [1], blockBytes, chunk)));
        Assert.Contains("divergent list", stats.Error);
    }

    [Fact]
    public void DivergentList_ForAnotherUnionSize_Aborts()
    {
        var stats = RunAgainst((c, union) => c.Send(DivergentList(UnionPages(union), [1], words: 9)));
        Assert.Contains("divergent list", stats.Error);
    }

    [Fact]
    public void SubBlockMask_NamingNoSubBlock_Aborts()
    {
        var stats = RunSubBlocks([0, 1], c => c.Send(SubBlockPages(0, 64, [(0UL, 0), (1UL, 1)])));
        Assert.Contains("names no sub-block", stats.Error);
    }

    [Fact]
    public void SubBlockMask_NamingASubBlockPastThePage_Aborts()
    {
        // 1024-byte sub-blocks: 4 per page, the mask is one byte; bit 4 is past the page
        var stats = RunSubBlocks([0], c => c.Send(SubBlockPages(0, 1024, [(0x10UL, 1)])), blockBytes: 1024);
        Assert.Contains("past the 4 of a page", stats.Error);
    }

    [Fact]
    public void SubBlockFrame_EndingInsideASubBlock_Aborts()
    {
        var stats = RunSubBlocks([0], c => c.Send(SubBlockPages(0, 64, [(0b101UL, 2)], extra: -10)));
        Assert.Contains("ends inside the sub-blocks", stats.Error);
    }

    [Fact]
    public void SubBlockFrame_EndingInsideAMask_Aborts()
    {
        var stats = RunSubBlocks([0, 1], c => c.Send(SubBlockPages(0, 64, [(1UL, 1)], count: 2)));
        Assert.Contains("ends inside the mask", stats.Error);
    }

    [Fact]
    public void SubBlockFrame_WithBytesLeftOver_Aborts()
    {
        var stats = RunSubBlocks([0], c => c.Send(SubBlockPages(0, 64, [(1UL, 1)], extra: 7)));
        Assert.Contains("holds", stats.Error);
    }

    [Fact]
    public void SubBlockFrame_ClaimingOtherBlocks_Aborts()
    {
        var stats = RunSubBlocks([0], c => c.Send(SubBlockPages(0, 64, [(1UL, 1)], blocks: 2)));
        Assert.Contains("it claims 2", stats.Error);
    }

    [Fact]
    public void SubBlockFrame_OutOfOrder_Aborts()
    {
        var stats = RunSubBlocks([0, 1], c => c.Send(SubBlockPages(1, 64, [(1UL, 1)])));
        Assert.Contains("sub-block frame", stats.Error);
    }

    [Fact]
    public void SubBlockFrame_PastTheChunk_Aborts()
    {
        // chunks of one page: the first chunk's answer may hold only page 0
        var stats = RunSubBlocks([0, 1], c => c.Send(SubBlockPages(0, 64, [(1UL, 1), (1UL, 1)])), chunk: 1);
        Assert.Contains("sub-block frame", stats.Error);
    }

    [Fact]
    public void SubBlockFrame_OfAnotherSize_Aborts()
    {
        var stats = RunSubBlocks([0], c => c.Send(SubBlockPages(0, 128, [(1UL, 1)])));
        Assert.Contains("sub-block frame", stats.Error);
    }

    [Fact]
    public void WholePages_AfterTheDivergentList_Abort()
    {
        var stats = RunSubBlocks([0], c => c.Send(new RawBody(FrameType.SyncPages, new SyncPages { Epoch = 1, Count = 1 }, Pages(0))));
        Assert.Contains("sub-block frame", stats.Error);
    }

    [Theory]
    [InlineData(0U)]
    [InlineData(3U)]
    [InlineData(16U)]
    public void DivergentList_WithAnInvalidHashLength_Aborts(uint hashBytes)
    {
        var stats = RunAgainst((c, union) => c.Send(DivergentList(UnionPages(union), [0], hashBytes: hashBytes)));
        Assert.Contains($"{hashBytes}-byte hashes", stats.Error);
    }

    /// <summary>Page 0's sub-block 0 as the primary claims it (2-byte sub-block hashes: the backup checks pages), with a
    /// root that no page put together from it has: the backup asks for page 0 whole (the REPAIR round), then
    /// what answer gives.</summary>
    private static SyncStats RunRepair(Action<SyncConnection> answer) =>
        RunSubBlocks([0], c =>
        {
            c.Send(SubBlockPages(0, 64, [(1UL, 1)], pageHash: 0x1234));
            c.Send(new RawBody(FrameType.SyncDeviceState, new SyncDeviceState { Epoch = 1, TotalLength = 2, PagesSent = 1 }, [1, 2]));
            var frame = c.Read(TimeSpan.FromSeconds(5));
            Assert.Equal(FrameType.SyncBitmap, frame.Type);
            var repair = SyncBitmap.Parser.ParseFrom(frame.Header);
            Assert.Equal(BitmapKind.BitmapRepair, repair.Kind);
            Assert.Equal(1UL, repair.SetBits);
            answer(c);
        }, hashBytes: 2);

    [Fact]
    public void Repair_WithAPageThatDoesNotHaveTheRoot_AbortsBeforeWritingAnything()
    {
        var stats = RunRepair(c => c.Send(new RawBody(FrameType.SyncPages, new SyncPages { Epoch = 1, Count = 1 }, Pages(0))));
        Assert.Contains("does not have the primary's own root", stats.Error);
    }

    [Fact]
    public void Repair_SendingAnotherPage_Aborts()
    {
        var stats = RunRepair(c => c.Send(new RawBody(FrameType.SyncPages, new SyncPages { Epoch = 1, Count = 1 }, Pages(3))));
        Assert.Contains("page 0 was asked for next", stats.Error);
    }

    [Fact]
    public void Repair_AsSubBlocks_Aborts()
    {
        var stats = RunRepair(c => c.Send(SubBlockPages(0, 64, [(1UL, 1)])));
        Assert.Contains("repair frame", stats.Error);
    }

    [Fact]
    public void Repair_AnsweredWithAnAck_Aborts()
    {
        var stats = RunRepair(c => c.Send(new RawBody(FrameType.SyncAck, new SyncAck { Epoch = 1, PagesApplied = 1 }, [])));
        Assert.Contains("SyncAck", stats.Error);
    }

    [Fact]
    public void SubBlocks_WithoutADivergentList_Abort()
    {
        var stats = RunAgainst((c, _) => c.Send(SubBlockPages(0, 64, [(1UL, 1)])));
        Assert.Contains("page frame", stats.Error);
    }

    [Fact]
    public void DeviceState_BeforeEveryListedPage_Aborts()
    {
        var stats = RunSubBlocks([0, 1], c =>
        {
            c.Send(SubBlockPages(0, 64, [(1UL, 1)]));
            c.Send(new RawBody(FrameType.SyncDeviceState, new SyncDeviceState { Epoch = 1, TotalLength = 2, PagesSent = 2 }, [1, 2]));
        });
        Assert.Contains("expected a SyncPages frame, got SyncDeviceState", stats.Error);
    }

    [Fact]
    public void DeviceState_CountingOtherPages_Aborts()
    {
        var stats = RunSubBlocks([0], c =>
        {
            c.Send(SubBlockPages(0, 64, [(1UL, 1)]));
            c.Send(new RawBody(FrameType.SyncDeviceState, new SyncDeviceState { Epoch = 1, TotalLength = 2, PagesSent = 2 }, [1, 2]));
        });
        Assert.Contains("primary sent 2 pages, 1 arrived", stats.Error);
    }

    [Fact]
    public void APrimaryOfAnOlderProtocol_Aborts_NamingBothVersions()
    {
        using var pair = new SyncPair(Layout, backupOptions: new SyncOptions { Timeout = TimeSpan.FromSeconds(5), Log = _ => { } });
        var old = pair.BackupMemory.Snapshot();
        var connection = pair.Primary.Connection!;
        pair.Primary.Connection = null;
        var backup = pair.Backup.RunAsync(new SyncRequest(1, 10));
        connection.Send(new RawBody(FrameType.SyncBegin, new SyncBegin { Epoch = 1, LogIndex = 10 }, []));
        var frame = connection.Read(TimeSpan.FromSeconds(5));
        var theirs = SyncBitmap.Parser.ParseFrom(frame.Header);
        Assert.Equal(SyncProtocol.Version, theirs.Protocol);
        // what a build before protocol 2 sends: no protocol field
        connection.Send(new RawBody(FrameType.SyncBitmap, new SyncBitmap { Epoch = 1, LogIndex = 10, Encoding = BitmapEncoding.BitmapRuns,
            TotalWords = theirs.TotalWords, LayoutHash = theirs.LayoutHash }, []));
        var stats = backup.Result;
        Assert.Equal(SyncOutcome.Aborted, stats.Outcome);
        Assert.Contains($"the peer speaks sync protocol 0 (an older Plover, before sub-blocks), this node {SyncProtocol.Version}", stats.Error);
        Assert.True(pair.BackupMemory.Matches(old));
        connection.Dispose();
    }

    [Fact]
    public void PrimaryAbortMessage_IsReported()
    {
        var stats = RunAgainst((c, _) => c.Send(new RawBody(FrameType.SyncAbort, new SyncAbort { Epoch = 1, Reason = "disk on fire" }, [])));
        Assert.Contains("disk on fire", stats.Error);
    }
}
