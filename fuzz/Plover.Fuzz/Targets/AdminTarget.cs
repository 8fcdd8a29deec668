using System.Text;
using System.Text.Json;
using Plover.Native.Host;

namespace Plover.Fuzz.Targets;

/// <summary>
/// The admin command parser (<see cref="AdminCommands.Execute"/>, Plover.Native's Host compiled as Plover.Fuzz.Admin)
/// over a <see cref="FakeQemu"/>. Byte 0: bit 0 clear = the node in probe mode with the machine ready (every probe
/// command reaches the host), set = the node in replicate mode before machine_ready (the replica's commands).
/// The rest: request lines, split at '\n' and decoded as UTF-8 with '\r' trimmed, as the admin socket does (at most
/// 16 per input). Documented behaviour: Execute never throws and answers each line with one line of JSON,
/// {"ok":true,...} or {"ok":false,"error":"..."}; a usage error or a refusal is an ok:false reply. A command that
/// fails with an unexpected exception (the catch-all that logs "admin command ... failed") is a finding.
/// </summary>
public sealed class AdminTarget : IFuzzTarget
{
    private const int MaxLines = 16;
    private FakeQemu? _qemu;
    private AdminCommands? _probe, _replicate;

    public string Name => "admin";
    public string Description => "admin request lines -> AdminCommands.Execute (probe mode, machine ready; replicate mode) on a fake QEMU";
    public string LastOutcome { get; private set; } = "";

    public void Run(ReadOnlySpan<byte> input)
    {
        LastOutcome = "refused: empty input";
        if (input.IsEmpty) return;
        _qemu ??= new FakeQemu();
        _probe ??= new AdminCommands(_qemu.Probe);
        _replicate ??= new AdminCommands(_qemu.Replicate);
        var commands = (input[0] & 1) != 0 ? _replicate : _probe;
        FakeQemu.TakeErrors();

        var rest = input[1..];
        var outcomes = new List<string>();
        for (int n = 0; n < MaxLines && !rest.IsEmpty; n++)
        {
            int newline = rest.IndexOf((byte)'\n');
            var raw = newline < 0 ? rest : rest[..newline];
            rest = newline < 0 ? [] : rest[(newline + 1)..];
            string line = Encoding.UTF8.GetString(raw).TrimEnd('\r');
            string reply = commands.Execute(line);
            outcomes.Add(Check(line, reply));
            foreach (string error in FakeQemu.TakeErrors())
                if (error.StartsWith("admin command", StringComparison.Ordinal))
                    throw new FuzzFinding($"request '{line}' failed unexpectedly: {error}");
        }
        LastOutcome = outcomes.Count == 0 ? "refused: no request" : string.Join("; ", outcomes);
    }

    /// <summary>The reply is one line, a JSON object with a boolean "ok" (and an "error" string when false).</summary>
    private static string Check(string line, string reply)
    {
        if (reply.Contains('\n')) throw new FuzzFinding($"request '{line}': the reply spans lines: {reply}");
        try
        {
            using var doc = JsonDocument.Parse(reply);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("ok", out var ok) || ok.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                throw new FuzzFinding($"request '{line}': the reply has no boolean ok: {reply}");
            if (ok.ValueKind == JsonValueKind.True) return "accepted";
            if (!root.TryGetProperty("error", out var error) || error.ValueKind != JsonValueKind.String)
                throw new FuzzFinding($"request '{line}': an ok:false reply without an error: {reply}");
            return "refused: " + error.GetString();
        }
        catch (JsonException e)
        {
            throw new FuzzFinding($"request '{line}': the reply is not JSON ({e.Message}): {reply}");
        }
    }

    public IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        yield return ("probe-queries", [0, .. "help\nstatus\nramblocks\nnics\nnet-stats\nvcpus\n"u8]);
        yield return ("probe-host", [0, .. "dirty-sync list\ndirty-mark-all\ndirty-sync\ndirty-clear\ndevstate-roundtrip\nhash-ram\n"u8]);
        yield return ("probe-net", [0, .. "inject 0 5254001234560800\r\nsteal 0 on\nstolen 0\nsteal 0 off\nout-mode 0 hold\nout-cut 0\nout-release 0 1\nout-discard 0 1\nout-mode 0 pass\n"u8]);
        yield return ("replicate", [1, .. "help\nreplica\nsyncs 3\nsync-now\nverify-at-sync\nverify-result\nverify-pages 0\nmetrics-reset\ndivergence reset\ninject 0 00\n"u8]);
    }
}
