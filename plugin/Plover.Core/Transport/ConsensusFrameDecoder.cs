using Google.Protobuf;
using Plover.Consensus;
using Plover.Wire;

namespace Plover.Transport;

/// <summary>
/// Turns a Consensus frame into a <see cref="Message"/>, checking everything the core would trust: the kind,
/// that the sender is the authenticated peer and the receiver is us, entry kinds, that the metadata arrays agree
/// and that the payload lengths add up to the tail exactly. The protobuf header is parsed into one reused
/// instance (packed arrays keep their storage), the entries go into one reused array, and each payload is copied
/// once, into a <see cref="PayloadArena"/>: that copy becomes the log's. So decoding allocates nothing; the message's
/// entries are valid until the next <see cref="Decode"/> (what the core keeps, it detaches). Throws
/// InvalidDataException with the reason. Not thread-safe.
/// </summary>
public sealed class ConsensusFrameDecoder
{
    private readonly ConsensusMessage _wire = new();
    private readonly PayloadArena _payloads;
    private LogEntry[] _entries = [];

    /// <summary>A decoder whose payloads are never reused (each entry keeps its own until it is dropped).</summary>
    public ConsensusFrameDecoder() : this(new PayloadArena()) { }

    public ConsensusFrameDecoder(PayloadArena payloads) => _payloads = payloads;

    /// <summary>Checks a frame from peer at node selfId as <see cref="Decode"/> does, without copying anything out.</summary>
    public void Validate(int selfId, int peer, ReadOnlySpan<byte> header, int tailLength) => Parse(selfId, peer, header, tailLength);

    /// <summary>Decodes a frame that arrived from peer at node selfId.</summary>
    public Message Decode(int selfId, int peer, ReadOnlySpan<byte> header, ReadOnlySpan<byte> tail)
    {
        var w = Parse(selfId, peer, header, tail.Length);
        int n = w.EntryLengths.Count;
        if (_entries.Length < n) _entries = new LogEntry[Math.Max(n, 2 * _entries.Length)];
        int at = 0;
        for (int i = 0; i < n; i++)
        {
            int len = (int)w.EntryLengths[i];
            long index = w.FirstEntryIndex + i;
            var payload = _payloads.Copy(tail.Slice(at, len), index);
            at += len;
            _entries[i] = new LogEntry(index, new Ballot(w.EntryBallotRounds[i], w.EntryBallotNodes[i]), (EntryType)(int)w.EntryKinds[i], payload);
        }
        return new Message
        {
            Type = (MessageType)(int)w.Kind, From = w.From, To = w.To, Ballot = new Ballot(w.BallotRound, w.BallotNode),
            Index = w.Index, Commit = w.Commit, LogStart = w.LogStart, Reject = w.Reject, Entries = _entries.AsMemory(0, n),
            Nonce = w.Nonce, LeaderId = w.LeaderId,
        };
    }

    private ConsensusMessage Parse(int selfId, int peer, ReadOnlySpan<byte> header, int tailLength)
    {
        var w = _wire;
        Reset(w);
        try
        {
            w.MergeFrom(header);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"malformed consensus header: {e.Message}");
        }

        if (w.Kind is < ConsensusKind.PreVote or > ConsensusKind.RecoveryResponse)
            throw new InvalidDataException($"unknown consensus message kind {(int)w.Kind}");
        if (w.From != peer) throw new InvalidDataException($"consensus message claims to come from node {w.From}, connection is node {peer}");
        if (w.To != selfId) throw new InvalidDataException($"consensus message addressed to node {w.To}, this is node {selfId}");
        int n = w.EntryLengths.Count;
        if (w.EntryBallotRounds.Count != n || w.EntryBallotNodes.Count != n || w.EntryKinds.Count != n)
            throw new InvalidDataException($"consensus entry arrays disagree ({w.EntryBallotRounds.Count}/{w.EntryBallotNodes.Count}/{w.EntryKinds.Count}/{n})");
        if (n > 0 && w.FirstEntryIndex < 1) throw new InvalidDataException($"consensus entries start at index {w.FirstEntryIndex}");
        if (n > 0 && w.FirstEntryIndex > long.MaxValue - n) throw new InvalidDataException("consensus entry index overflows");

        long total = 0;
        for (int i = 0; i < n; i++)
        {
            total += w.EntryLengths[i];
            var k = w.EntryKinds[i];
            if (k is < EntryKind.EntryNoop or > EntryKind.EntryRole) throw new InvalidDataException($"unknown entry kind {(int)k}");
        }
        if (total != tailLength) throw new InvalidDataException($"entry payloads add up to {total} bytes, the frame carries {tailLength}");
        return w;
    }

    /// <summary>Generated messages have no Clear; proto3 omits default fields, so reset everything by hand before MergeFrom.</summary>
    private static void Reset(ConsensusMessage w)
    {
        w.Kind = ConsensusKind.Unspecified;
        w.From = w.To = w.BallotNode = 0;
        w.BallotRound = w.Index = w.Commit = w.LogStart = w.FirstEntryIndex = 0;
        w.Reject = false;
        w.Nonce = 0;
        w.LeaderId = 0;
        w.EntryBallotRounds.Clear();
        w.EntryBallotNodes.Clear();
        w.EntryKinds.Clear();
        w.EntryLengths.Clear();
    }
}
