using System.Text;
using Plover.Consensus;

namespace Plover.Tests.Consensus.Scenarios;

/// <summary>
/// Stable, readable text for entries and messages (no hashes, no timestamps, nothing hash-ordered).
/// An entry is <c>index@ballot kind detail</c>, e.g. <c>4@2.2 role primary=2 backup=none</c> or
/// <c>5@1.1 input "x"</c>. A message is <c>from->to Type field=value ... entries=[...]</c>, showing only the
/// fields that type uses (see <see cref="MessageType"/>). Recovery nonces are random; they print as #1, #2, ...
/// in the order they first appear in the run.
/// </summary>
internal sealed class ScenarioFormat
{
    /// <summary>Longer entry lists show their first and last few entries and how many lie between.</summary>
    private const int MaxEntriesShown = 6;

    private readonly Dictionary<ulong, int> _nonces = new();

    public static string Entry(in LogEntry e) => $"{e.Index}@{e.Ballot} {Value(e)}";

    /// <summary>What an entry carries, without its index and ballot (a re-proposed entry keeps its value).</summary>
    public static string Value(in LogEntry e)
    {
        switch (e.Type)
        {
            case EntryType.Noop: return "noop";
            case EntryType.Sync:
                try
                {
                    var (epoch, next) = EntryPayloads.DecodeSyncWithMode(e.Payload.Span);
                    return $"sync epoch={epoch}{(next == SyncModeChange.None ? "" : $" next={next.ToString().ToLowerInvariant()}")}";
                }
                catch (FormatException) { return $"sync {Hex(e)}"; }
            case EntryType.Role:
                try
                {
                    var (ballot, primary, backup) = EntryPayloads.DecodeRole(e.Payload.Span);
                    return $"role {ballot} primary={primary} backup={(backup == 0 ? "none" : backup.ToString())}";
                }
                catch (FormatException) { return $"role {Hex(e)}"; }
            case EntryType.Input:
                try
                {
                    var frames = new List<ReadOnlyMemory<byte>>();
                    int nic = EntryPayloads.DecodeInput(e.Payload, frames);
                    var sb = new StringBuilder("input");
                    if (nic != 0) sb.Append(" nic=").Append(nic);
                    foreach (var f in frames) sb.Append(' ').Append(Quote(f.Span));
                    return sb.ToString();
                }
                catch (FormatException) { return $"input {Hex(e)}"; }
            default: return $"{e.Type} {Hex(e)}";
        }
    }

    public static byte[] InputPayload(string text) => EntryPayloads.EncodeInput(0, [Encoding.UTF8.GetBytes(text)]);

    public string Entries(IReadOnlyList<LogEntry> entries)
    {
        if (entries.Count <= MaxEntriesShown) return "[" + string.Join(", ", entries.Select(e => Entry(e))) + "]";
        int head = MaxEntriesShown / 2, tail = MaxEntriesShown - head;
        return "[" + string.Join(", ", entries.Take(head).Select(e => Entry(e))) +
               $", ... {entries.Count - head - tail} more ..., " +
               string.Join(", ", entries.Skip(entries.Count - tail).Select(e => Entry(e))) + "]";
    }

    public string Message(Message m)
    {
        var sb = new StringBuilder($"{m.From}->{m.To} {m.Type}");
        switch (m.Type)
        {
            case MessageType.PreVote:
                sb.Append($" ballot={m.Ballot} commit={m.Commit}");
                break;
            case MessageType.PreVoteReply:
                sb.Append($" ballot={m.Ballot} {(m.Reject ? "rejected" : "granted")}");
                break;
            case MessageType.Prepare:
                sb.Append($" ballot={m.Ballot} from={m.Index}");
                break;
            case MessageType.Promise:
                sb.Append($" ballot={m.Ballot} first={m.Index} commit={m.Commit}");
                break;
            case MessageType.Nack:
                sb.Append($" ballot={m.Ballot}");
                break;
            case MessageType.Accept:
                sb.Append($" ballot={m.Ballot} index={m.Index} commit={m.Commit}");
                if (m.LogStart > 1) sb.Append($" logstart={m.LogStart}");
                if (m.Entries.Length == 0) sb.Append(" (heartbeat)");
                break;
            case MessageType.Accepted:
                sb.Append($" ballot={m.Ballot} index={m.Index}");
                if (m.Reject) sb.Append(" gap");
                break;
            case MessageType.SnapshotRequired:
                sb.Append($" ballot={m.Ballot} index={m.Index} commit={m.Commit}");
                break;
            case MessageType.RecoveryRequest:
                sb.Append($" nonce={Nonce(m.Nonce)}");
                break;
            case MessageType.RecoveryResponse:
                sb.Append($" nonce={Nonce(m.Nonce)} ballot={m.Ballot} first={m.Index} commit={m.Commit} leader={Leader(m.LeaderId)}");
                break;
            default:
                sb.Append($" {m}");
                break;
        }
        if (m.Entries.Length > 0 || m.Type is MessageType.Promise or MessageType.RecoveryResponse)
            sb.Append(" entries=").Append(Entries(m.Entries.ToArray()));
        return sb.ToString();
    }

    public string Nonce(ulong nonce)
    {
        if (!_nonces.TryGetValue(nonce, out int label)) _nonces[nonce] = label = _nonces.Count + 1;
        return $"#{label}";
    }

    public static string Leader(int id) => id == 0 ? "none" : id.ToString();

    public static string Role((int Primary, int Backup)? role) =>
        role is { } r ? $"primary={r.Primary} backup={(r.Backup == 0 ? "none" : r.Backup.ToString())}" : "none known";

    private static string Quote(ReadOnlySpan<byte> bytes)
    {
        string s = Encoding.UTF8.GetString(bytes);
        return s.All(c => c >= ' ' && c < 127 && c != '"') ? $"\"{s}\"" : "0x" + Convert.ToHexString(bytes);
    }

    private static string Hex(in LogEntry e) => e.Payload.Length == 0 ? "(empty)" : "0x" + Convert.ToHexString(e.Payload.Span);
}
