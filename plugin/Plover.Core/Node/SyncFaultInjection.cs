using System.Diagnostics;
using Plover.Sync;

namespace Plover.Node;

/// <summary>
/// Test-only: kills this process (SIGKILL, as a host crash would) when its sync engine reaches an armed step, so the
/// end-to-end failure suite can crash a node after the cut, during page transfer or in the backup's apply. Off
/// unless the process was started with PLOVER_FAULT_INJECTION=1; the admin socket arms it (fault-at-sync), or
/// PLOVER_FAULT_AT_START=STEP[:N] before the first sync (which may run before the admin socket can be reached).
/// </summary>
public sealed class SyncFaultInjection
{
    private readonly Action<string> _log;
    private SyncStep? _step;
    private int _remaining;

    public SyncFaultInjection(Action<string> log)
    {
        _log = log;
        if (Environment.GetEnvironmentVariable("PLOVER_FAULT_AT_START") is not { Length: > 0 } atStart) return;
        string[] parts = atStart.Split(':');
        if (!Enum.TryParse(parts[0], out SyncStep step) || parts.Length > 2 ||
            !int.TryParse(parts.Length == 2 ? parts[1] : "1", out int occurrence) || occurrence < 1)
            throw new ArgumentException($"PLOVER_FAULT_AT_START={atStart} is not STEP[:N] (a sync step, e.g. Stopped, and an occurrence >= 1)");
        Arm(step, occurrence);
        _log($"FAULT INJECTION: armed at start: {step}, occurrence {occurrence}");
    }

    public static bool Enabled => Environment.GetEnvironmentVariable("PLOVER_FAULT_INJECTION") == "1";

    /// <summary>Kill the process the occurrence-th time (1 = the next) this node's engine reaches step.</summary>
    public void Arm(SyncStep step, int occurrence)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(occurrence, 1);
        lock (this)
        {
            _step = step;
            _remaining = occurrence;
        }
    }

    /// <summary>The engine's step hook (its thread).</summary>
    public void OnStep(SyncRole role, SyncStep step)
    {
        lock (this)
        {
            if (_step != step || --_remaining > 0) return;
            _step = null;
        }
        _log($"FAULT INJECTION: the {role.ToString().ToLowerInvariant()} kills itself at sync step {step}");
        Process.GetCurrentProcess().Kill();
    }
}
