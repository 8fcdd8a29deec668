using Plover.Consensus;
using Plover.Idle;
using Plover.Sync;

namespace Plover.Node;

public enum ReplicaEventKind : byte
{
    /// <summary>The host is ready (machine_ready): hold output, apply the log or start the join.</summary>
    Start,
    /// <summary>A committed log entry (<see cref="ReplicaEvent.Entry"/>), in log order.</summary>
    Committed,
    /// <summary>A sync or join the core asked for ended (<see cref="ReplicaEvent.Request"/>, <see cref="ReplicaEvent.Result"/>).</summary>
    SyncFinished,
    /// <summary>The primary's guest runs again while the sync of <see cref="ReplicaEvent.Request"/> goes on.</summary>
    ResumedEarly,
    /// <summary>Consensus role, ballot or leader changed (<see cref="ReplicaEvent.Status"/>).</summary>
    ConsensusChanged,
    /// <summary>This node no longer leads <see cref="ReplicaEvent.Fence"/>'s ballot.</summary>
    Fenced,
    /// <summary>The sync link is up or down (<see cref="ReplicaEvent.Flag"/>); <see cref="ReplicaEvent.Value"/> counts the
    /// connections ever made, so a new number while up is a new connection (a (re)joined backup).</summary>
    Link,
    /// <summary>Time passes: <see cref="ReplicaEvent.Value"/> is now in ms; <see cref="ReplicaEvent.Flag"/> says the
    /// backup answered consensus recently; <see cref="ReplicaEvent.Flag2"/> that the guard holds output.</summary>
    Tick,
    /// <summary>The idle monitor fired (<see cref="ReplicaEvent.Trigger"/>).</summary>
    IdleTrigger,
    /// <summary>Someone asked for a sync now (admin, tests).</summary>
    SyncRequested,
    /// <summary>Consensus refused a proposal the core asked for (<see cref="ReplicaEvent.Purpose"/>).</summary>
    ProposalRefused,
    /// <summary>The guest sent frames that are now held.</summary>
    OutputHeld,
    /// <summary>Checkpoint mode: the primary let a frame straight into its guest.</summary>
    FramePassed,
    /// <summary>Apply the committed entries left over after <see cref="ReplicaActionKind.Yield"/>.</summary>
    Continue,
}

/// <summary>Why the core proposed an entry (so that a refusal is handled by whoever asked).</summary>
public enum ProposalPurpose : byte { IdleSync, RequestedSync, NewBackupSync, RunAlone, Reprotect }

/// <summary>What the core needs to know of a finished sync or join (from <see cref="SyncStats"/>).</summary>
public readonly record struct SyncResult(bool Completed, bool FullSync = false, bool Joined = false, ulong Epoch = 0,
    long LogIndex = 0, ulong InputDigest = 0, bool InputsDiverged = false, ulong DivergentPages = 0, ulong UnionPages = 0,
    string? Error = null, bool StateInvalid = false)
{
    /// <summary>The mode after the cut (a join adopts the primary's).</summary>
    public bool NextCheckpoint { get; init; }
    /// <summary>Primary: every frame of the sync on the sync link, both directions.</summary>
    public long WireBytes { get; init; }
    /// <summary>Primary: the pages it had dirty at the cut (what a checkpoint sends).</summary>
    public ulong PrimaryDirtyPages { get; init; }
    /// <summary>Primary: its whole saved device state (what a checkpoint sends), and its dirty bitmap as sent.</summary>
    public long DeviceStateBytes { get; init; }
    public long BitmapBytes { get; init; }

    public static SyncResult From(SyncStats? stats, string? error, bool stateInvalid) => stats is null
        ? new SyncResult(false, Error: error, StateInvalid: stateInvalid)
        : new SyncResult(stats.Outcome == SyncOutcome.Completed, stats.FullSync, stats.Joined, stats.Epoch, stats.LogIndex,
                         stats.InputDigest, stats.InputsDiverged, stats.DivergentPages, stats.UnionPages, stats.Error ?? error, stateInvalid)
        {
            NextCheckpoint = stats.NextCheckpoint, WireBytes = stats.Wire.Total,
            PrimaryDirtyPages = stats.Role == SyncRole.Primary ? stats.LocalDirtyPages : 0,
            DeviceStateBytes = (long)stats.DeviceStateSavedBytes, BitmapBytes = stats.LocalBitmapBytes,
        };
}

/// <summary>One input of <see cref="ReplicaCore.Step"/>: a value (posting one to the owner thread allocates nothing).</summary>
public readonly record struct ReplicaEvent
{
    public ReplicaEventKind Kind { get; private init; }
    public LogEntry Entry { get; private init; }
    public SyncRequest? Request { get; private init; }
    public SyncResult Result { get; private init; }
    public ConsensusStatus? Status { get; private init; }
    public Fence Fence { get; private init; }
    public SyncTrigger Trigger { get; private init; }
    public ProposalPurpose Purpose { get; private init; }
    public long Value { get; private init; }
    public bool Flag { get; private init; }
    public bool Flag2 { get; private init; }

    public static ReplicaEvent Start() => new() { Kind = ReplicaEventKind.Start };
    public static ReplicaEvent Committed(in LogEntry entry) => new() { Kind = ReplicaEventKind.Committed, Entry = entry };
    public static ReplicaEvent SyncFinished(SyncRequest request, SyncResult result) =>
        new() { Kind = ReplicaEventKind.SyncFinished, Request = request, Result = result };
    public static ReplicaEvent ResumedEarly(SyncRequest request) => new() { Kind = ReplicaEventKind.ResumedEarly, Request = request };
    public static ReplicaEvent ConsensusChanged(ConsensusStatus status) => new() { Kind = ReplicaEventKind.ConsensusChanged, Status = status };
    public static ReplicaEvent Fenced(Fence fence) => new() { Kind = ReplicaEventKind.Fenced, Fence = fence };
    public static ReplicaEvent Link(bool up, long connections) => new() { Kind = ReplicaEventKind.Link, Flag = up, Value = connections };
    public static ReplicaEvent Tick(long nowMs, bool backupAnswering, bool guardHolding) =>
        new() { Kind = ReplicaEventKind.Tick, Value = nowMs, Flag = backupAnswering, Flag2 = guardHolding };
    public static ReplicaEvent Idle(SyncTrigger trigger) => new() { Kind = ReplicaEventKind.IdleTrigger, Trigger = trigger };
    public static ReplicaEvent SyncRequested() => new() { Kind = ReplicaEventKind.SyncRequested };
    public static ReplicaEvent ProposalRefused(ProposalPurpose purpose) => new() { Kind = ReplicaEventKind.ProposalRefused, Purpose = purpose };
    public static ReplicaEvent OutputHeld() => new() { Kind = ReplicaEventKind.OutputHeld };
    public static ReplicaEvent FramePassed() => new() { Kind = ReplicaEventKind.FramePassed };
    public static ReplicaEvent Continue() => new() { Kind = ReplicaEventKind.Continue };
}
