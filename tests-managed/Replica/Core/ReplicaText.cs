using System.Buffers.Binary;
using Plover.Consensus;
using Plover.Node;
using Plover.Tests.Consensus.Scenarios;

namespace Plover.Tests.Replica.Core;

/// <summary>Stable one-line text for the replica core's events and actions (scenario output, unit test expectations).
/// Input frames print as the number they carry.</summary>
internal static class ReplicaText
{
    public static string Event(in ReplicaEvent e) => e.Kind switch
    {
        ReplicaEventKind.Start => "start",
        ReplicaEventKind.Committed => "committed " + Entry(e.Entry),
        ReplicaEventKind.SyncFinished => $"sync-finished {ReplicaSim.Describe(e.Request!)} " +
            (e.Result.Completed ? "completed" + (e.Result.Joined ? $" joined e{e.Result.Epoch} at {e.Result.LogIndex}" : "") + (e.Result.FullSync ? " full" : "")
                                : "aborted"),
        ReplicaEventKind.ResumedEarly => $"resumed-early {ReplicaSim.Describe(e.Request!)}",
        ReplicaEventKind.ConsensusChanged => $"consensus {e.Status!.Role.ToString().ToLowerInvariant()} ballot={e.Status.Ballot} leader={e.Status.LeaderId}",
        ReplicaEventKind.Fenced => $"fenced ballot={e.Fence.Ballot} {e.Fence.Reason}",
        ReplicaEventKind.Link => $"link {(e.Flag ? "up" : "down")} connections={e.Value}",
        ReplicaEventKind.Tick => $"tick now={e.Value}{(e.Flag ? "" : " backup-silent")}{(e.Flag2 ? " guard-holding" : "")}",
        ReplicaEventKind.IdleTrigger => $"idle-trigger {e.Trigger.ToString().ToLowerInvariant()}",
        ReplicaEventKind.SyncRequested => "sync-requested",
        ReplicaEventKind.ProposalRefused => $"proposal-refused {e.Purpose}",
        ReplicaEventKind.OutputHeld => "output-held",
        ReplicaEventKind.FramePassed => "frame-passed",
        ReplicaEventKind.Continue => "continue",
        _ => e.Kind.ToString(),
    };

    public static string Action(in ReplicaAction a) => a.Kind switch
    {
        ReplicaActionKind.Inject => $"inject nic={a.Nic} input={BinaryPrimitives.ReadInt32LittleEndian(a.Frame.Span)}",
        ReplicaActionKind.RunSync => a.Request!.IsJoin ? "run-sync join"
            : $"run-sync e{a.Request.Epoch} at {a.Request.LogIndex}{(a.Request.FullSync ? " full" : "")}{Mode(a.Request)}",
        ReplicaActionKind.ProposeSync => $"propose-sync e{a.Epoch} ({a.Purpose}){(a.NextMode == SyncModeChange.None ? "" : $" next={a.NextMode.ToString().ToLowerInvariant()}")}",
        ReplicaActionKind.ProposeRole => $"propose-role backup={(a.Node == 0 ? "none" : a.Node.ToString())} ({a.Purpose})",
        ReplicaActionKind.SetSyncRole => $"set-sync-role {a.Role.ToString().ToLowerInvariant()}",
        ReplicaActionKind.SetCanCampaign => $"set-can-campaign {a.Flag.ToString().ToLowerInvariant()}",
        ReplicaActionKind.InstallSnapshot or ReplicaActionKind.Compact => $"{Name(a.Kind)} {a.Index}",
        ReplicaActionKind.GuardRunUnprotected or ReplicaActionKind.GuardFence or ReplicaActionKind.Event => $"{Name(a.Kind)} \"{a.Text}\"",
        _ => Name(a.Kind),
    };

    /// <summary>A sync's mode, printed only where checkpointing is involved (replication is the default).</summary>
    private static string Mode(Plover.Sync.SyncRequest r) =>
        (r.Checkpoint == true ? " checkpoint" : "") +
        (r.NextCheckpoint is { } next && next != (r.Checkpoint ?? false) ? (next ? " then-checkpoint" : " then-replicate") : "") +
        (r.BackupOwnDirt ? " own-dirt" : "");

    public static string Entry(in LogEntry e)
    {
        if (e.Type != EntryType.Input) return ScenarioFormat.Entry(e);
        var frames = new List<ReadOnlyMemory<byte>>();
        EntryPayloads.DecodeInput(e.Payload, frames);
        return $"{e.Index}@{e.Ballot} input " + string.Join(" ", frames.Select(f => BinaryPrimitives.ReadInt32LittleEndian(f.Span)));
    }

    /// <summary>GuardRunUnprotected -> guard-run-unprotected.</summary>
    private static string Name(ReplicaActionKind kind) =>
        string.Concat(kind.ToString().Select((c, i) => char.IsUpper(c) && i > 0 ? "-" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));
}
