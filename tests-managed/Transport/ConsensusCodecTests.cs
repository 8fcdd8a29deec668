using Plover.Consensus;
using Plover.Transport;
using Xunit;

namespace Plover.Tests.Transport;

public sealed class ConsensusCodecTests
{
    [Fact]
    public void MessagesSurviveTheWireExactly()
    {
        var rng = new Random(5);
        var key = new byte[32];
        var writer = new FrameWriter();
        writer.Authenticate(new FrameAuthenticator(key));
        var reader = new FrameReader();
        reader.Authenticate(new FrameAuthenticator(key));
        var encoder = new ConsensusFrameEncoder();
        var decoder = new ConsensusFrameDecoder();
        using var buf = new ByteBuffer(128);
        for (int i = 0; i < 500; i++)
        {
            int n = rng.Next(0, 20);
            long first = rng.NextInt64(1, 1L << 40);
            var entries = Enumerable.Range(0, n).Select(k =>
            {
                var p = new byte[rng.Next(4) == 0 ? 0 : rng.Next(1, 3000)];
                rng.NextBytes(p);
                return new LogEntry(first + k, new Ballot(rng.NextInt64(1, 1L << 40), rng.Next(1, 4)), (EntryType)rng.Next(0, 4), p);
            }).ToArray();
            var m = new Message
            {
                Type = (MessageType)rng.Next(1, 11), From = 3, To = 1, Ballot = new Ballot(rng.NextInt64(0, 1L << 40), rng.Next(0, 4)),
                Index = rng.NextInt64(0, 1L << 40), Commit = rng.NextInt64(0, 1L << 40), LogStart = rng.NextInt64(0, 1L << 40),
                Reject = rng.Next(2) == 0, Entries = entries, Nonce = (ulong)rng.NextInt64(), LeaderId = rng.Next(0, 4),
            };
            writer.Write(buf, encoder.Set(m));
            Assert.Equal(FrameStatus.Complete, reader.TryRead(buf.Data, out var frame, out int consumed, out _));
            Assert.Equal(FrameType.Consensus, frame.Type);
            var d = decoder.Decode(1, 3, frame.Header, frame.Tail);
            buf.Consume(consumed);

            Assert.Equal(m.ToString(), d.ToString());
            Assert.Equal((m.Nonce, m.LeaderId), (d.Nonce, d.LeaderId));
            Assert.Equal(m.Entries.Length, d.Entries.Length);
            for (int k = 0; k < n; k++)
            {
                Assert.Equal(m.Entries.Span[k].Ballot, d.Entries.Span[k].Ballot);
                Assert.True(m.Entries.Span[k].SameValue(d.Entries.Span[k]));
            }
        }
        Assert.Equal(0, buf.Count);
    }

    [Fact]
    public void NonContiguousEntriesAreABugAtTheSender()
    {
        var m = new Message
        {
            Type = MessageType.Accept, From = 1, To = 2, Ballot = new Ballot(1, 1),
            Entries = new LogEntry[] { new LogEntry(5, new Ballot(1, 1), EntryType.Input, new byte[1]), new LogEntry(7, new Ballot(1, 1), EntryType.Input, new byte[1]) },
        };
        Assert.Throws<ArgumentException>(() => new ConsensusFrameEncoder().Set(m));
    }

    [Fact]
    public void PayloadLengthsMustMatchTheTail()
    {
        var m = new Message
        {
            Type = MessageType.Accept, From = 1, To = 2, Ballot = new Ballot(1, 1),
            Entries = new LogEntry[] { new LogEntry(5, new Ballot(1, 1), EntryType.Input, new byte[10]) },
        };
        var enc = new ConsensusFrameEncoder().Set(m);
        var body = new byte[enc.Length];
        enc.Write(body);
        Assert.True(FrameBody.TrySplit(body, out var header, out _, out _));
        int headerLength = header.Length;
        var e = Assert.Throws<InvalidDataException>(() =>
            new ConsensusFrameDecoder().Decode(2, 1, body.AsSpan(4, headerLength), body.AsSpan(4 + headerLength, 9)));
        Assert.Contains("add up to 10 bytes, the frame carries 9", e.Message);
    }
}
