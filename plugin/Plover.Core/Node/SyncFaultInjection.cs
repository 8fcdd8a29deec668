using System.Diagnostics;
using Plover.Sync;

namespace Plover.Node;

/// <summary>
/// Test-only: kills this process (SIGKILL, as a host crash would) when its sync engine reaches an armed step, so the
/// end-to-end failure suite can crash a node after the cut, during page transfer or in the backup's apply. Off
/// unless the process was started with PLOVER_FAULT_INJECTION=1; the admin socket arms it (fault-at-sync).
/// </summary>
public sealed class SyncFaultInjection
{
    private readonly Action<string> _log;
    private SyncStep? _step;
    private int _remaining;

    public SyncFaultInjection(Action<string> log) => _log = log;

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
