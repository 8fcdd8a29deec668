using Plover.Consensus;
using Plover.Metrics;
using Plover.Transport;
using Xunit;

namespace Plover.Tests.Metrics;

public sealed class WireTrafficTests
{
    private static Message Msg(MessageType type, params LogEntry[] entries) =>
        new() { Type = type, From = 1, To = 2, Ballot = new Ballot(3, 1), Index = entries.Length > 0 ? entries[0].Index : 7, Entries = entries };

    [Fact]
    public void Every_frame_is_counted_whole_by_kind_on_both_sides()
    {
        var key = new byte[32];
        var sentBy = new WireTraffic();
        var receivedBy = new WireTraffic();
        var writer = new FrameWriter { Stats = sentBy, Channel = WireChannel.Consensus };
        writer.Authenticate(new FrameAuthenticator(key));
        var reader = new FrameReader { Stats = receivedBy, Channel = WireChannel.Consensus };
        reader.Authenticate(new FrameAuthenticator(key));
        var encoder = new ConsensusFrameEncoder();
        using var buf = new ByteBuffer(1024);
        var entry = new LogEntry(7, new Ballot(3, 1), EntryType.Input, new byte[1000]);
        var expected = new Dictionary<WireKind, long>();
        void Send(IFrameBody body, WireKind kind)
        {
            int before = buf.Count;
            writer.Write(buf, body);
            expected[kind] = expected.GetValueOrDefault(kind) + buf.Count - before;
        }
        Send(encoder.Set(Msg(MessageType.Accept, entry)), WireKind.Entries);
        Send(encoder.Set(Msg(MessageType.Accept)), WireKind.Heartbeats);
        Send(encoder.Set(Msg(MessageType.Accepted)), WireKind.Acks);
        Send(encoder.Set(Msg(MessageType.Prepare)), WireKind.Elections);
        Send(encoder.Set(Msg(MessageType.PreVote)), WireKind.Elections);
        Send(encoder.Set(Msg(MessageType.RecoveryResponse, entry)), WireKind.Recovery);
        writer.Write(buf, FrameType.SyncPages, new byte[4096 + 8]);
        expected[WireKind.Pages] = writer.FrameSize(4096 + 8);
        writer.Write(buf, FrameType.SyncDisk, new byte[4096 + 8]);   // the drives' blocks, apart from the pages
        expected[WireKind.Disk] = writer.FrameSize(4096 + 8);

        long total = buf.Count;
        while (buf.Count > 0)
        {
            Assert.Equal(FrameStatus.Complete, reader.TryRead(buf.Data, out _, out int consumed, out _));
            buf.Consume(consumed);
        }
        foreach (var (kind, bytes) in expected)
        {
            Assert.Equal(bytes, sentBy.SentBytes(WireChannel.Consensus, kind));
            Assert.Equal(bytes, receivedBy.ReceivedBytes(WireChannel.Consensus, kind));
        }
        Assert.Equal((total, 0L), sentBy.Total);
        Assert.Equal((0L, total), receivedBy.Total);
        Assert.True(sentBy.SentBytes(WireChannel.Consensus, WireKind.Entries) > 1000 + FrameFormat.HeaderSize + FrameFormat.MacSize);
        Assert.Equal(2, sentBy.Snapshot().Single(r => r.Kind == WireKind.Elections).SentFrames);
    }
}
