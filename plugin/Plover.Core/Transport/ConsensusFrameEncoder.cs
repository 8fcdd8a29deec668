using Google.Protobuf;
using Plover.Consensus;
using Plover.Wire;

namespace Plover.Transport;

/// <summary>
/// Writes a <see cref="Message"/> as a Consensus frame body: the ConsensusMessage header (entry metadata as
/// packed arrays), then the entry payloads copied straight from the log into the send buffer. One instance is
/// refilled per message (<see cref="Set"/>), so encoding allocates nothing. Not thread-safe.
/// </summary>
public sealed class ConsensusFrameEncoder : IFrameBody
{
    private readonly ConsensusMessage _wire = new();
    private Message _message;
    private int _headerSize;
    private int _tailSize;

    public FrameType Type => FrameType.Consensus;
    public int Length => FrameBody.Size(_headerSize, _tailSize);

    public ConsensusFrameEncoder Set(in Message m)
    {
        _message = m;
        var w = _wire;
        w.Kind = (ConsensusKind)(int)m.Type;
        w.From = m.From;
        w.To = m.To;
        w.BallotRound = m.Ballot.Round;
        w.BallotNode = m.Ballot.NodeId;
        w.Index = m.Index;
        w.Commit = m.Commit;
        w.LogStart = m.LogStart;
        w.Reject = m.Reject;
        w.Nonce = m.Nonce;
        w.LeaderId = m.LeaderId;
        w.EntryBallotRounds.Clear();
        w.EntryBallotNodes.Clear();
        w.EntryKinds.Clear();
        w.EntryLengths.Clear();
        var entries = m.Entries.Span;
        w.FirstEntryIndex = entries.Length > 0 ? entries[0].Index : 0;
        long tail = 0;
        for (int i = 0; i < entries.Length; i++)
        {
            ref readonly var e = ref entries[i];
            if (e.Index != w.FirstEntryIndex + i)
                throw new ArgumentException($"consensus message entries are not contiguous at {e.Index}: {m.ToString()}");
            w.EntryBallotRounds.Add(e.Ballot.Round);
            w.EntryBallotNodes.Add(e.Ballot.NodeId);
            w.EntryKinds.Add((EntryKind)(int)e.Type);
            w.EntryLengths.Add((uint)e.Payload.Length);
            tail += e.Payload.Length;
        }
        if (tail > int.MaxValue / 2) throw new ArgumentException($"consensus message payloads too large ({tail} bytes)");
        _tailSize = (int)tail;
        _headerSize = w.CalculateSize();
        return this;
    }

    public void Write(Span<byte> destination)
    {
        FrameBody.WriteHeaderLength(destination, _headerSize);
        _wire.WriteTo(destination.Slice(4, _headerSize));
        var tail = destination[(4 + _headerSize)..];
        foreach (var e in _message.Entries.Span)
        {
            e.Payload.Span.CopyTo(tail);
            tail = tail[e.Payload.Length..];
        }
    }
}
