using System.Buffers.Binary;
using Google.Protobuf;
using Plover.Consensus;
using Plover.Transport;
using Plover.Wire;
using Xunit;

namespace Plover.Tests.Transport;

/// <summary>
/// The frame decoder and the consensus decoder against random and mutated input: they never throw (the
/// consensus decoder only InvalidDataException), never ask to buffer more than the limit, and never accept a
/// frame that was not sent exactly as is.
/// </summary>
public sealed class FrameFuzzTests
{
    private static readonly byte[] SessionKey = Enumerable.Range(0, 32).Select(i => (byte)(200 - i)).ToArray();
    private const int MaxFrame = 1 << 20;

    /// <summary>Feeds the stream in random chunks, the way a connection does; returns the frames accepted and the final status.</summary>
    private static (List<(FrameType Type, byte[] Body)> Frames, FrameStatus Final) Feed(byte[] stream, FrameReader reader, Random rng)
    {
        var frames = new List<(FrameType, byte[])>();
        using var buf = new ByteBuffer(64);
        int pos = 0;
        while (true)
        {
            var st = reader.TryRead(buf.Data, out var f, out int consumed, out int needed);
            if (st == FrameStatus.Complete)
            {
                frames.Add((f.Type, f.Body.ToArray()));
                if (f.Type == FrameType.Consensus) DecodeConsensus(f.Header, f.Tail);
                buf.Consume(consumed);
                continue;
            }
            if (st == FrameStatus.Invalid)
            {
                Assert.False(string.IsNullOrEmpty(reader.Error));
                return (frames, st);
            }
            Assert.InRange(needed, 1, reader.MaxFrameBytes);
            if (pos == stream.Length) return (frames, st);
            int n = Math.Min(stream.Length - pos, rng.Next(1, 80));
            stream.AsSpan(pos, n).CopyTo(buf.Append(n));
            pos += n;
        }
    }

    private static void DecodeConsensus(ReadOnlySpan<byte> header, ReadOnlySpan<byte> tail)
    {
        try { new ConsensusFrameDecoder().Decode(2, 1, header, tail); }
        catch (InvalidDataException) { /* refused cleanly */ }
    }

    private static FrameReader AuthReader()
    {
        var r = new FrameReader(MaxFrame);
        r.Authenticate(new FrameAuthenticator(SessionKey));
        return r;
    }

    [Fact]
    public void RandomBytesAreRefusedWithoutThrowing()
    {
        var rng = new Random(1234);
        int invalid = 0;
        for (int i = 0; i < 6000; i++)
        {
            var stream = new byte[rng.Next(0, 400)];
            rng.NextBytes(stream);
            if (stream.Length >= 5 && rng.Next(2) == 0)
            {
                // Plausible header so the deeper checks are reached too.
                BinaryPrimitives.WriteUInt32LittleEndian(stream, (uint)rng.Next(0, stream.Length + 8));
                stream[4] = (byte)(rng.Next(3) switch { 0 => 1, 1 => 8, _ => rng.Next(256) });
                if (stream.Length >= 13 && rng.Next(2) == 0) stream.AsSpan(5, 8).Clear();
            }
            bool authenticated = i % 2 == 0;
            var reader = authenticated ? AuthReader() : new FrameReader(MaxFrame);
            var (frames, final) = Feed(stream, reader, rng);
            if (authenticated) Assert.Empty(frames);   // nobody forges a GMAC by chance
            if (final == FrameStatus.Invalid) invalid++;
        }
        Assert.True(invalid > 3000, $"only {invalid} of 6000 random streams were refused");
    }

    private static byte[] RandomConsensusBody(Random rng)
    {
        int n = rng.Next(0, 5);
        long first = rng.Next(1, 1000);
        var entries = Enumerable.Range(0, n).Select(i =>
        {
            var p = new byte[rng.Next(0, 64)];
            rng.NextBytes(p);
            return new LogEntry(first + i, new Ballot(rng.Next(1, 5), rng.Next(1, 4)), (EntryType)rng.Next(0, 4), p);
        }).ToArray();
        var m = new Message
        {
            Type = (MessageType)rng.Next(1, 9), From = 1, To = 2, Ballot = new Ballot(rng.Next(1, 9), 1),
            Index = rng.Next(0, 1000), Commit = rng.Next(0, 1000), LogStart = rng.Next(1, 10), Reject = rng.Next(2) == 0, Entries = entries,
        };
        var enc = new ConsensusFrameEncoder().Set(m);
        var body = new byte[enc.Length];
        enc.Write(body);
        return body;
    }

    [Fact]
    public void MutatedStreamsNeverYieldAForgedFrame()
    {
        var rng = new Random(99);
        int refused = 0;
        for (int i = 0; i < 5000; i++)
        {
            var writer = new FrameWriter(MaxFrame);
            writer.Authenticate(new FrameAuthenticator(SessionKey));
            using var buf = new ByteBuffer(256);
            var sent = new List<(FrameType Type, byte[] Body)>();
            var offsets = new List<int>();
            int count = rng.Next(1, 5);
            for (int f = 0; f < count; f++)
            {
                offsets.Add(buf.Count);
                var type = rng.Next(2) == 0 ? FrameType.Consensus : FrameType.Ping;
                var body = type == FrameType.Consensus ? RandomConsensusBody(rng) : TransportTestKit.RawBody(RandomBytes(rng, rng.Next(0, 100)));
                writer.Write(buf, type, body);
                sent.Add((type, body));
            }
            var stream = Mutate(buf.Data.ToArray(), offsets, rng);

            var (frames, final) = Feed(stream, AuthReader(), rng);
            // Whatever was accepted is exactly a prefix of what was sent.
            Assert.True(frames.Count <= sent.Count);
            for (int f = 0; f < frames.Count; f++)
            {
                Assert.Equal(sent[f].Type, frames[f].Type);
                Assert.Equal(sent[f].Body, frames[f].Body);
            }
            if (final == FrameStatus.Invalid || frames.Count < sent.Count) refused++;
        }
        Assert.True(refused > 4000, $"only {refused} of 5000 mutated streams were cut short");
    }

    private static byte[] RandomBytes(Random rng, int n)
    {
        var b = new byte[n];
        rng.NextBytes(b);
        return b;
    }

    private static byte[] Mutate(byte[] s, List<int> offsets, Random rng)
    {
        var list = s.ToList();
        switch (rng.Next(8))
        {
            case 0: { int p = rng.Next(s.Length); s[p] ^= (byte)(1 << rng.Next(8)); return s; }           // bit flip
            case 1: { int p = rng.Next(s.Length); s[p] = (byte)rng.Next(256); return s; }                  // byte set (may be a no-op)
            case 2: return s[..rng.Next(s.Length)];                                                         // truncation
            case 3: list.Insert(rng.Next(s.Length + 1), (byte)rng.Next(256)); return list.ToArray();      // insertion
            case 4: list.RemoveAt(rng.Next(s.Length)); return list.ToArray();                              // deletion
            case 5:
            {
                // Length field rewritten to something else.
                int f = offsets[rng.Next(offsets.Count)];
                uint old = BinaryPrimitives.ReadUInt32LittleEndian(s.AsSpan(f));
                BinaryPrimitives.WriteUInt32LittleEndian(s.AsSpan(f), rng.Next(3) switch { 0 => old + 1, 1 => old - 1, _ => (uint)rng.Next() });
                return s;
            }
            case 6:
            {
                // A frame replayed (duplicated right after itself).
                int k = rng.Next(offsets.Count);
                int end = k + 1 < offsets.Count ? offsets[k + 1] : s.Length;
                list.InsertRange(end, s[offsets[k]..end]);
                return list.ToArray();
            }
            default:
            {
                // Frames reordered: the last one moved to the front (a no-op if there is only one).
                if (offsets.Count < 2) { s[^1] ^= 0xff; return s; }
                int last = offsets[^1];
                return [.. s[last..], .. s[..last]];
            }
        }
    }

    [Fact]
    public void ConsensusDecoderRefusesMutatedBodiesCleanly()
    {
        var rng = new Random(7);
        int refused = 0;
        for (int i = 0; i < 5000; i++)
        {
            var body = RandomConsensusBody(rng);
            int flips = rng.Next(1, 4);
            for (int k = 0; k < flips; k++) body[rng.Next(body.Length)] = (byte)rng.Next(256);
            if (!FrameBody.TrySplit(body, out var header, out var tail, out _)) { refused++; continue; }
            try
            {
                var m = new ConsensusFrameDecoder().Decode(2, 1, header, tail);
                Assert.Equal(1, m.From);
                Assert.Equal(2, m.To);
                Assert.True(m.Entries.ToArray().Sum(e => (long)e.Payload.Length) == tail.Length);
            }
            catch (InvalidDataException) { refused++; }
        }
        Assert.True(refused > 1000, $"only {refused} refused");
    }

    [Fact]
    public void RandomHellosAreJudgedWithoutThrowing()
    {
        var rng = new Random(3);
        var self = TestKeys.Identity(2, [1, 2, 3], cluster: "c");
        int accepted = 0;
        for (int i = 0; i < 3000; i++)
        {
            var bytes = RandomBytes(rng, rng.Next(0, 80));
            var hello = new Hello();
            try { hello.MergeFrom(bytes); }
            catch (InvalidProtocolBufferException) { continue; }
            bool dial = rng.Next(2) == 0;
            if (Handshake.CheckHello(hello, self, ChannelPurpose.Consensus, dial ? 3 : 0, dial, allowObserver: !dial) is null) accepted++;
        }
        Assert.Equal(0, accepted);
        var good = new Hello
        {
            ProtocolVersion = Handshake.ProtocolVersion, Cluster = "c", NodeId = 1, ExpectedPeerId = 2, Nonce = ByteString.CopyFrom(new byte[32]),
            Purpose = "consensus", Encrypt = true, EphemeralKey = ByteString.CopyFrom(new byte[64]),
        };
        Assert.Null(Handshake.CheckHello(good, self, ChannelPurpose.Consensus, 0, weDial: false));
    }
}
