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

    private sealed class RawBody(FrameType type, IMessage header, byte[] tail) : IFrameBody
    {
        public FrameType Type => type;
        public int Length => FrameBody.Size(header.CalculateSize(), tail.Length);
        public void Write(Span<byte> destination)
        {
            int h = header.CalculateSize();
            FrameBody.WriteHeaderLength(destination, h);
            header.WriteTo(destination.Slice(4, h));
            tail.CopyTo(destination[(4 + h)..]);
        }
    }

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

    [Fact]
    public void PrimaryAbortMessage_IsReported()
    {
        var stats = RunAgainst((c, _) => c.Send(new RawBody(FrameType.SyncAbort, new SyncAbort { Epoch = 1, Reason = "disk on fire" }, [])));
        Assert.Contains("disk on fire", stats.Error);
    }
}
