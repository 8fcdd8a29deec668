using Google.Protobuf;
using Plover.Sync;
using Plover.Transport;
using Plover.Wire;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>
/// An authenticated but misbehaving backup (the test speaks for it over the real connection): the primary aborts
/// with a reason, resumes its VM and keeps this epoch's output held.
/// </summary>
public class HostileBackupTests
{
    private static readonly (string, ulong)[] Layout = [("pc.ram", 1UL << 20)];

    /// <summary>The primary dirtied pages 0..9 (all diverge from the backup's); the test's backup sends an empty
    /// bitmap with protocol, garbage page hashes (so every union page diverges) and then what attack gives.</summary>
    private static SyncStats RunAgainst(uint protocol, Action<SyncConnection, ulong> attack)
    {
        using var pair = new SyncPair(Layout, new SyncOptions { Timeout = TimeSpan.FromSeconds(5), Log = _ => { } });
        for (ulong p = 0; p < 10; p++) pair.PrimaryMemory.Write(0, p, 0, p + 1);
        pair.PrimaryNic.GuestSends(77);
        var connection = pair.Backup.Connection!;
        pair.Backup.Connection = null;   // the test speaks for the backup
        var primary = pair.Primary.RunAsync(new SyncRequest(1, 10));
        var frame = connection.Read(TimeSpan.FromSeconds(5));
        Assert.Equal(FrameType.SyncBegin, frame.Type);
        bool deviceDelta = SyncBegin.Parser.ParseFrom(frame.Header).DeviceDelta;
        var words = (ulong)pair.PrimaryMemory.Blocks[0].Words;
        var layout = new SyncLayout(pair.BackupMemory.Blocks);
        connection.Send(new RawBody(FrameType.SyncBitmap, new SyncBitmap { Epoch = 1, LogIndex = 10, Encoding = BitmapEncoding.BitmapRuns,
            TotalWords = words, LayoutHash = layout.Hash, Protocol = protocol }, []));
        if (protocol == SyncProtocol.Version)
        {
            frame = connection.Read(TimeSpan.FromSeconds(5));
            Assert.Equal(FrameType.SyncBitmap, frame.Type);
            ulong union = SyncBitmap.Parser.ParseFrom(frame.Header).SetBits;
            connection.Send(new RawBody(FrameType.SyncHashes, new SyncHashes { Epoch = 1, FirstIndex = 0, Count = (uint)union, Total = union },
                Enumerable.Repeat((byte)0x11, (int)union * 8).ToArray()));
            if (deviceDelta) connection.Send(new RawBody(FrameType.SyncDeviceHashes, new SyncDeviceHashes { Epoch = 1 }, []));
            attack(connection, union);
        }
        var stats = primary.Result;
        Assert.Equal(SyncOutcome.Aborted, stats.Outcome);
        Assert.True(pair.PrimaryVm.Running);
        Assert.DoesNotContain(77, pair.PrimaryNic.Sent);
        connection.Dispose();
        return stats;
    }

    [Fact]
    public void ABackupOfAnOlderProtocol_Aborts_NamingBothVersions()
    {
        var stats = RunAgainst(0, (_, _) => { });
        Assert.Contains($"the peer speaks sync protocol 0 (an older Plover, before sub-blocks), this node {SyncProtocol.Version}", stats.Error);
    }

    [Fact]
    public void ABackupOfANewerProtocol_Aborts()
    {
        var stats = RunAgainst(SyncProtocol.Version + 1, (_, _) => { });
        Assert.Contains($"the peer speaks sync protocol {SyncProtocol.Version + 1}, this node {SyncProtocol.Version}", stats.Error);
    }

    private static void ReadDivergentList(SyncConnection c, ulong expected)
    {
        var frame = c.Read(TimeSpan.FromSeconds(5));
        Assert.Equal(FrameType.SyncBitmap, frame.Type);
        var h = SyncBitmap.Parser.ParseFrom(frame.Header);
        Assert.Equal(BitmapKind.BitmapDivergent, h.Kind);
        Assert.Equal(expected, h.SetBits);
        Assert.Equal((uint)SyncOptions.DefaultSubBlockBytes, h.SubBlockBytes);
    }

    [Fact]
    public void SubBlockHashes_ForOtherPages_Abort()
    {
        var stats = RunAgainst(SyncProtocol.Version, (c, union) =>
        {
            ReadDivergentList(c, union);
            int perPage = 4096 / SyncOptions.DefaultSubBlockBytes;
            c.Send(new RawBody(FrameType.SyncHashes, new SyncHashes { Epoch = 1, FirstIndex = 3, Count = 1, Total = union,
                SubBlockBytes = (uint)SyncOptions.DefaultSubBlockBytes }, new byte[perPage * 8]));
        });
        Assert.Contains("sub-block hash frame", stats.Error);
    }

    [Fact]
    public void SubBlockHashes_OfTheWrongLength_Abort()
    {
        var stats = RunAgainst(SyncProtocol.Version, (c, union) =>
        {
            ReadDivergentList(c, union);
            c.Send(new RawBody(FrameType.SyncHashes, new SyncHashes { Epoch = 1, FirstIndex = 0, Count = 2, Total = union,
                SubBlockBytes = (uint)SyncOptions.DefaultSubBlockBytes }, new byte[100]));
        });
        Assert.Contains("sub-block hash frame", stats.Error);
    }

    [Fact]
    public void PageHashesInsteadOfSubBlockHashes_Abort()
    {
        var stats = RunAgainst(SyncProtocol.Version, (c, union) =>
        {
            ReadDivergentList(c, union);
            c.Send(new RawBody(FrameType.SyncHashes, new SyncHashes { Epoch = 1, FirstIndex = 0, Count = (uint)union, Total = union },
                new byte[union * 8]));
        });
        Assert.Contains("sub-block hash frame", stats.Error);
    }
}
