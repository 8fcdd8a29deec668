using Plover.Consensus;
using Plover.Transport;

namespace Plover.Fuzz.Targets;

/// <summary>
/// The body of a Consensus frame from node 1 at node 2, as the transport hands it over once the frame's MAC
/// checked: split into header and tail (<see cref="FrameBody.TrySplit"/>), then <see cref="ConsensusFrameDecoder"/>
/// (one decoder reused across inputs, as a connection reuses it). Documented refusals: TrySplit's false and the
/// decoder's InvalidDataException (the connection is closed). Property: a message that decodes encodes again
/// (<see cref="ConsensusFrameEncoder"/>) into a body that decodes to the same message.
/// Input: the frame body (u32 header length, protobuf ConsensusMessage, entry payloads).
/// </summary>
public sealed class ConsensusFrameTarget : IFuzzTarget
{
    private const int Self = 2, Peer = 1;
    // Created at the first input: under afl-fuzz, instrumented code may run only inside SharpFuzz's loop.
    private ConsensusFrameDecoder? _decoder, _again;
    private ConsensusFrameEncoder? _encoder;

    public string Name => "consensus";
    public string Description => "Consensus frame body -> FrameBody.TrySplit + ConsensusFrameDecoder (+ re-encode round trip)";

    public string LastOutcome { get; private set; } = "";

    public void Run(ReadOnlySpan<byte> input)
    {
        if (!FrameBody.TrySplit(input, out var header, out var tail, out string? splitError))
        {
            LastOutcome = "refused: " + splitError;
            return;
        }
        _decoder ??= new ConsensusFrameDecoder();
        _again ??= new ConsensusFrameDecoder();
        _encoder ??= new ConsensusFrameEncoder();
        Message m;
        try
        {
            _decoder.Validate(Self, Peer, header, tail.Length);
            m = _decoder.Decode(Self, Peer, header, tail);
        }
        catch (InvalidDataException e)
        {
            LastOutcome = "refused: " + e.Message;
            return;
        }
        LastOutcome = "accepted";

        var body = new byte[_encoder.Set(m).Length];
        _encoder.Write(body);
        if (!FrameBody.TrySplit(body, out var h2, out var t2, out string? error)) throw new FuzzFinding($"re-encoded body does not split: {error}");
        var again = _again.Decode(Self, Peer, h2, t2);
        if (!Same(m, again)) throw new FuzzFinding($"round trip changed the message: {m} became {again}");
    }

    private static bool Same(in Message a, in Message b)
    {
        if (a.Type != b.Type || a.From != b.From || a.To != b.To || a.Ballot != b.Ballot || a.Index != b.Index || a.Commit != b.Commit
            || a.LogStart != b.LogStart || a.Reject != b.Reject || a.Nonce != b.Nonce || a.LeaderId != b.LeaderId
            || a.Entries.Length != b.Entries.Length)
            return false;
        for (int i = 0; i < a.Entries.Length; i++)
        {
            var (x, y) = (a.Entries.Span[i], b.Entries.Span[i]);
            if (x.Ballot != y.Ballot || !x.SameValue(y)) return false;
        }
        return true;
    }

    public IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        var ballot = new Ballot(3, 1);
        LogEntry[] entries =
        [
            new(10, ballot, EntryType.Input, EntryPayloads.EncodeInput(0, [new byte[] { 1, 2, 3 }, new byte[60]])),
            new(11, ballot, EntryType.Sync, EntryPayloads.EncodeSync(4)),
            new(12, ballot, EntryType.Role, EntryPayloads.EncodeRole(ballot, 1, 2)),
            new(13, ballot, EntryType.Noop, ReadOnlyMemory<byte>.Empty),
        ];
        yield return ("prevote", Body(new Message { Type = MessageType.PreVote, From = Peer, To = Self, Ballot = ballot, Commit = 9 }));
        yield return ("prepare", Body(new Message { Type = MessageType.Prepare, From = Peer, To = Self, Ballot = ballot, Index = 10 }));
        yield return ("promise", Body(new Message { Type = MessageType.Promise, From = Peer, To = Self, Ballot = ballot, Index = 1, Commit = 9, Entries = entries }));
        yield return ("accept", Body(new Message { Type = MessageType.Accept, From = Peer, To = Self, Ballot = ballot, Commit = 9, Entries = entries }));
        yield return ("accepted", Body(new Message { Type = MessageType.Accepted, From = Peer, To = Self, Ballot = ballot, Index = 13 }));
        yield return ("nack", Body(new Message { Type = MessageType.Nack, From = Peer, To = Self, Ballot = new Ballot(5, 3), Reject = true }));
        yield return ("recovery", Body(new Message { Type = MessageType.RecoveryResponse, From = Peer, To = Self, Ballot = ballot, Nonce = 77, LeaderId = 1, LogStart = 5 }));
    }

    private static byte[] Body(in Message m)
    {
        var encoder = new ConsensusFrameEncoder();
        var body = new byte[encoder.Set(m).Length];
        encoder.Write(body);
        return body;
    }
}
