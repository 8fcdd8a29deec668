using Plover.Consensus;
using Plover.Sync;

namespace Plover.Node;

public enum ReplicaActionKind : byte
{
    /// <summary>Guard.Start: hold output from now on.</summary>
    StartGuard,
    StopVm,
    /// <summary>vm_start (through the checkpoint gate); a no-op on a running VM.</summary>
    StartVm,
    /// <summary>net_inject <see cref="ReplicaAction.Frame"/> on <see cref="ReplicaAction.Nic"/>.</summary>
    Inject,
    /// <summary>Queue <see cref="ReplicaAction.Request"/> on the sync engine; its end comes back as SyncFinished.</summary>
    RunSync,
    /// <summary>Close the sync connection: a sync in flight aborts; the link reconnects by itself.</summary>
    CloseSyncConnection,
    /// <summary>Propose SYNC(<see cref="ReplicaAction.Epoch"/>); a refusal comes back as ProposalRefused.</summary>
    ProposeSync,
    /// <summary>Propose ROLE(current ballot, self, <see cref="ReplicaAction.Node"/>; 0: no backup).</summary>
    ProposeRole,
    GuardProtect,
    /// <summary>Release everything held and let output out at once (<see cref="ReplicaAction.Text"/> says why).</summary>
    GuardRunUnprotected,
    /// <summary>Nothing is released from here on (<see cref="ReplicaAction.Text"/> says why).</summary>
    GuardFence,
    /// <summary>A promoted backup: release what it holds, run unprotected.</summary>
    GuardPromote,
    /// <summary>Discard what is held; hold like a backup.</summary>
    GuardDemote,
    /// <summary>The sync engine's side (<see cref="ReplicaAction.Role"/>).</summary>
    SetSyncRole,
    /// <summary>Gratuitous ARP after a promotion.</summary>
    Announce,
    StartIdleMonitor,
    StopIdleMonitor,
    /// <summary>The idle monitor may fire again (an epoch started).</summary>
    RearmIdleMonitor,
    /// <summary>Consensus: may this node campaign (<see cref="ReplicaAction.Flag"/>).</summary>
    SetCanCampaign,
    /// <summary>Consensus: a joined state covers the log through <see cref="ReplicaAction.Index"/>.</summary>
    InstallSnapshot,
    /// <summary>Consensus: the VM state covers the log through <see cref="ReplicaAction.Index"/>.</summary>
    Compact,
    /// <summary>Entries wait: give the main loop back, then step Continue.</summary>
    Yield,
    /// <summary>A role change or its cause, for <see cref="Replica.Events"/> (the driver adds the time).</summary>
    Event,
}

/// <summary>One output of <see cref="ReplicaCore"/>, executed by the driver in order.</summary>
public readonly record struct ReplicaAction
{
    public ReplicaActionKind Kind { get; private init; }
    public int Nic { get; private init; }
    public ReadOnlyMemory<byte> Frame { get; private init; }
    public SyncRequest? Request { get; private init; }
    public ulong Epoch { get; private init; }
    /// <summary>ProposeSync: the mode the SYNC entry switches to (None: no change).</summary>
    public SyncModeChange NextMode { get; private init; }
    public int Node { get; private init; }
    public ProposalPurpose Purpose { get; private init; }
    public long Index { get; private init; }
    public bool Flag { get; private init; }
    public SyncRole Role { get; private init; }
    public string? Text { get; private init; }

    public static ReplicaAction Simple(ReplicaActionKind kind) => new() { Kind = kind };
    public static ReplicaAction Inject(int nic, ReadOnlyMemory<byte> frame) => new() { Kind = ReplicaActionKind.Inject, Nic = nic, Frame = frame };
    public static ReplicaAction RunSync(SyncRequest request) => new() { Kind = ReplicaActionKind.RunSync, Request = request };
    public static ReplicaAction ProposeSync(ulong epoch, ProposalPurpose purpose, SyncModeChange next = SyncModeChange.None) =>
        new() { Kind = ReplicaActionKind.ProposeSync, Epoch = epoch, Purpose = purpose, NextMode = next };
    public static ReplicaAction ProposeRole(int backup, ProposalPurpose purpose) =>
        new() { Kind = ReplicaActionKind.ProposeRole, Node = backup, Purpose = purpose };
    public static ReplicaAction WithText(ReplicaActionKind kind, string text) => new() { Kind = kind, Text = text };
    public static ReplicaAction SetSyncRole(SyncRole role) => new() { Kind = ReplicaActionKind.SetSyncRole, Role = role };
    public static ReplicaAction SetCanCampaign(bool can) => new() { Kind = ReplicaActionKind.SetCanCampaign, Flag = can };
    public static ReplicaAction AtIndex(ReplicaActionKind kind, long index) => new() { Kind = kind, Index = index };
}
