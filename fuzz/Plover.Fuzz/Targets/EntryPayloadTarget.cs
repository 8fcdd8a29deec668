using Plover.Consensus;

namespace Plover.Fuzz.Targets;

/// <summary>
/// A committed entry's payload as the replica decodes it (<see cref="EntryPayloads"/>): the first input byte picks
/// the entry type (0 INPUT, 1 SYNC, 2 ROLE, taken modulo 3), the rest is the payload. Documented refusal:
/// FormatException (the replica logs the entry as malformed and skips it). Property: a payload that decodes is
/// exactly what the encoder makes of the decoded value (the encodings are canonical, so two replicas that decode
/// the same bytes agree on the bytes).
/// </summary>
public sealed class EntryPayloadTarget : IFuzzTarget
{
    private readonly List<ReadOnlyMemory<byte>> _frames = new();

    public string Name => "entry";
    public string Description => "entry payloads -> EntryPayloads.DecodeInput / DecodeSyncWithMode / DecodeRole (+ re-encode)";

    public string LastOutcome { get; private set; } = "";

    public void Run(ReadOnlySpan<byte> input)
    {
        LastOutcome = "refused: empty input";
        if (input.IsEmpty) return;
        var payload = input[1..].ToArray();
        try
        {
            switch (input[0] % 3)
            {
                case 0:
                    _frames.Clear();
                    int nic = EntryPayloads.DecodeInput(payload, _frames);
                    foreach (var f in _frames)
                        if (f.Length > payload.Length) throw new FuzzFinding($"a frame of {f.Length} bytes from a payload of {payload.Length}");
                    Expect(payload, EntryPayloads.EncodeInput(nic, _frames), "INPUT");
                    break;
                case 1:
                    var (epoch, next) = EntryPayloads.DecodeSyncWithMode(payload);
                    Expect(payload, EntryPayloads.EncodeSync(epoch, next), "SYNC");
                    break;
                default:
                    var (ballot, primary, backup) = EntryPayloads.DecodeRole(payload);
                    Expect(payload, EntryPayloads.EncodeRole(ballot, primary, backup), "ROLE");
                    break;
            }
            LastOutcome = "accepted";
        }
        catch (FormatException e)
        {
            LastOutcome = "refused: " + e.Message;   // the replica skips a malformed entry
        }
    }

    private static void Expect(byte[] payload, byte[] encoded, string kind)
    {
        if (!payload.AsSpan().SequenceEqual(encoded))
            throw new FuzzFinding($"{kind} payload of {payload.Length} bytes decodes, but encodes back to {encoded.Length} different bytes");
    }

    public IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        yield return ("input", [0, .. EntryPayloads.EncodeInput(1, [new byte[] { 0xde, 0xad }, new byte[14], ReadOnlyMemory<byte>.Empty])]);
        yield return ("input-empty", [0, .. EntryPayloads.EncodeInput(0, [])]);
        yield return ("sync", [1, .. EntryPayloads.EncodeSync(42)]);
        yield return ("sync-to-checkpoint", [1, .. EntryPayloads.EncodeSync(42, SyncModeChange.Checkpoint)]);
        yield return ("role", [2, .. EntryPayloads.EncodeRole(new Ballot(7, 2), 2, 3)]);
    }
}
