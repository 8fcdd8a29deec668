namespace Plover.Node;

/// <summary>A replica's role as operators see it (QMP query-plover and its events; <c>plover status</c>).</summary>
public enum OperatorRole : byte { Starting, Primary, Backup, Joining, Probe }

/// <summary>What an operator watches, read on the main thread (no allocation: it is read at every drain).</summary>
public readonly record struct OperatorState(OperatorRole Role, long Term, bool Protected, int BackupId, long Fences,
    string FenceReason);

public enum OperatorEventKind : byte { RoleChanged, ProtectionLost, ProtectionRestored, Fenced }

/// <summary>One QMP event (PLOVER_ROLE_CHANGED, _PROTECTION_LOST, _PROTECTION_RESTORED, _FENCED).</summary>
public readonly record struct OperatorEvent(OperatorEventKind Kind, OperatorRole Role, OperatorRole Previous, long Term,
    int BackupId, string Reason);

/// <summary>
/// Turns successive <see cref="OperatorState"/>s into events: a fence (counted, so a fence and the standby that
/// follows in the same step are still seen), protection lost, the role changed, protection restored, in that
/// order when one observation brings several. Protection means what <c>plover status</c> calls protected: a
/// primary whose output waits for its synced backup; RESTORED is also sent the first time a primary is protected
/// after it started. Not thread-safe: one observer (the main thread).
/// </summary>
public sealed class OperatorEventWatcher
{
    private OperatorState _last = new(OperatorRole.Starting, 0, false, 0, 0, "");

    public OperatorState Last => _last;

    /// <summary>problem: why the node is not protected (asked only when protection was lost).</summary>
    public void Observe(in OperatorState now, Func<string> problem, Action<OperatorEvent> emit)
    {
        OperatorState was = _last;
        if (now.Role == was.Role && now.Protected == was.Protected && now.Fences == was.Fences) return;
        _last = now;
        if (now.Fences > was.Fences)
            emit(new OperatorEvent(OperatorEventKind.Fenced, now.Role, was.Role, now.Term, 0, now.FenceReason));
        if (was.Protected && !now.Protected)
            emit(new OperatorEvent(OperatorEventKind.ProtectionLost, now.Role, was.Role, now.Term, was.BackupId,
                problem() is { Length: > 0 } why ? why : "no longer a primary with a synced backup"));
        if (now.Role != was.Role)
            emit(new OperatorEvent(OperatorEventKind.RoleChanged, now.Role, was.Role, now.Term, now.BackupId,
                $"{Name(was.Role)} -> {Name(now.Role)} in term {now.Term}"));
        if (!was.Protected && now.Protected)
            emit(new OperatorEvent(OperatorEventKind.ProtectionRestored, now.Role, was.Role, now.Term, now.BackupId,
                $"node {now.BackupId} is a synced backup"));
    }

    public static string Name(OperatorRole role) => role.ToString().ToLowerInvariant();
}
