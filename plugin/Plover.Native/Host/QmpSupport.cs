using System.Text;
using Plover.Config;
using Plover.Interop;
using Plover.Node;
using Plover.Sync;

namespace Plover.Native.Host;

/// <summary>
/// What QEMU's QMP asks of the library (ABI 1.2): query-plover's figures (<see cref="Fill"/>), the answer to an
/// operator's stop, cont, system_reset or system_powerdown (<see cref="OperatorCommand"/>), and the events the
/// replica's operator state raises (<see cref="Emit"/>). All on QEMU's main thread; nothing here waits.
/// </summary>
internal static unsafe class QmpSupport
{
    /// <summary>query-plover: fills info from the node (the host zeroed it and set struct_size).</summary>
    public static void Fill(QemuNode node, PloverInfo* info)
    {
        PloverInfo v = default;
        v.node = (uint)node.Node.Id;
        v.mode = node.Mode == LibraryMode.Probe ? PloverAbi.ModeProbe
            : (node.Replica?.Node.Replica is { } now ? now.Checkpoint : node.Config.Sync.Mode == SyncMode.Checkpoint)
                ? PloverAbi.ModeCheckpoint : PloverAbi.ModeReplicate;   // adaptive: the mode now
        string problem = "";
        if (node.Mode == LibraryMode.Probe)
        {
            v.role = PloverAbi.RoleProbe;
            problem = "probe mode: the library observes and does not replicate";
        }
        else if (node.Replica is not { } replica)
        {
            v.role = PloverAbi.RoleStarting;
            problem = "starting: the machine is not ready yet";
        }
        else
        {
            ReplicaNode n = replica.Node;
            OperatorState state = n.OperatorSnapshot();
            v.disk_torn = replica.Disks is { Torn: true } ? 1 : 0;
            v.role = Role(state.Role);
            v.term = (ulong)state.Term;
            v.is_protected = state.Protected ? 1 : 0;
            v.backup = (uint)state.BackupId;
            v.sync_link = n.SyncLinkConnected ? 1 : 0;
            problem = n.Problem();
            if (n.Driver is { } d)
            {
                v.leader = (uint)Math.Max(0, d.LeaderId);
                v.commit_index = (ulong)Math.Max(0, d.CommitIndex);
            }
            if (n.Replica is { } r)
            {
                v.fenced = r.IsFenced ? 1 : 0;
                v.syncs_completed = (ulong)r.SyncsCompleted;
                v.syncs_aborted = (ulong)r.SyncsAborted;
                v.inputs_injected = (ulong)r.InputsInjected;
                v.frames_released = (ulong)r.Guard.FramesReleased;
                v.frames_discarded = (ulong)r.Guard.FramesDiscarded;
                (long promotions, long demotions, long joins) = r.RoleChanges;
                (v.promotions, v.demotions, v.joins) = ((ulong)promotions, (ulong)demotions, (ulong)joins);
                if (r.Engine.Metrics.LastCompleted is { } last)
                {
                    v.last_sync_epoch = last.Epoch;
                    v.last_sync_unix_us = (last.StartedUtc - DateTime.UnixEpoch).Ticks / 10;
                    v.last_sync_union_pages = last.UnionPages;
                    v.last_sync_identical_pages = last.IdenticalPages;
                    v.last_sync_divergent_pages = last.DivergentPages;
                    v.last_sync_wire_bytes = (ulong)Math.Max(0, last.Wire.Total);
                    v.last_sync_device_state_bytes = last.DeviceStateBytes;
                    v.last_sync_guest_pause_us = (ulong)Math.Max(0, Math.Round(last.Pause.Guest));
                    v.last_sync_total_us = (ulong)Math.Max(0, Math.Round(last.Pause.Total));
                    v.last_sync_disk_dirty_blocks = last.DiskLocalDirtyBlocks;
                    v.last_sync_disk_union_blocks = last.DiskUnionBlocks;
                    v.last_sync_disk_identical_blocks = last.DiskIdenticalBlocks;
                    v.last_sync_disk_divergent_blocks = last.DiskDivergentBlocks;
                    v.last_sync_disk_wire_bytes = (ulong)Math.Max(0, last.DiskWireBytes);
                }
            }
        }
        NativeText.WriteTruncated(problem, v.problem, 256);
        // an older host's struct is shorter: copy what it has room for, and say how much
        uint size = Math.Min(info->struct_size == 0 ? (uint)sizeof(PloverInfo) : info->struct_size, (uint)sizeof(PloverInfo));
        v.struct_size = size;
        Buffer.MemoryCopy(&v, info, size, size);
    }

    /// <summary>
    /// An operator's command (QMP or HMP). In probe mode the operator runs the VM: everything runs. While Plover
    /// replicates, the library alone decides when the guest runs (it starts it once the cluster is up, stops it
    /// at every sync's cut and resumes it after): cont is accepted and does nothing (libvirt sends it after
    /// starting QEMU with -S; the guest runs when Plover starts it); stop, system_reset and system_powerdown are
    /// refused, since they would reach one replica only and break the rule that both execute the same inputs
    /// (a paused primary also holds every client's output; a reset or ACPI power button on one replica makes it
    /// diverge for good). Returns PLOVER_CMD_RUN, PLOVER_CMD_IGNORE, or null with why refused.
    /// </summary>
    public static int? OperatorCommand(QemuNode node, int command, out string? refusal)
    {
        refusal = null;
        if (node.Mode == LibraryMode.Probe) return PloverAbi.CmdRun;
        string name = command switch
        {
            PloverAbi.CmdStop => "stop",
            PloverAbi.CmdCont => "cont",
            PloverAbi.CmdSystemReset => "system_reset",
            PloverAbi.CmdSystemPowerdown => "system_powerdown",
            _ => $"command {command}",
        };
        if (command == PloverAbi.CmdCont) return PloverAbi.CmdIgnore;
        string role = node.Replica?.Node is { } n ? OperatorEventWatcher.Name(n.OperatorSnapshot().Role) : "starting";
        refusal = $"'{name}' is refused: Plover replicates this VM (node {node.Node.Id}, {role}) and runs the guest " +
                  (command == PloverAbi.CmdStop
                      ? "itself; pausing one replica would hold every client's output and stall both. "
                      : "itself; a reset or power button seen by one replica only makes the two diverge. ") +
                  "To stop the service, quit both replicas' QEMU (a replica that dies alone is replaced)";
        return null;
    }

    /// <summary>Sends an operator event to QEMU, which emits it as QMP event PLOVER_*; a host without the event
    /// function (ABI 1.1) has no such events.</summary>
    public static void Emit(QemuHost host, in OperatorEvent e)
    {
        var ev = new PloverEvent
        {
            struct_size = (uint)sizeof(PloverEvent),
            kind = e.Kind switch
            {
                OperatorEventKind.RoleChanged => PloverAbi.EventRoleChanged,
                OperatorEventKind.ProtectionLost => PloverAbi.EventProtectionLost,
                OperatorEventKind.ProtectionRestored => PloverAbi.EventProtectionRestored,
                _ => PloverAbi.EventFenced,
            },
            role = Role(e.Role),
            previous_role = Role(e.Previous),
            term = (ulong)Math.Max(0, e.Term),
            backup = (uint)Math.Max(0, e.BackupId),
        };
        byte[] reason = Encoding.UTF8.GetBytes(e.Reason + "\0");
        fixed (byte* p = reason)
        {
            ev.reason = p;
            host.Event(&ev);
        }
    }

    private static int Role(OperatorRole role) => role switch
    {
        OperatorRole.Primary => PloverAbi.RolePrimary,
        OperatorRole.Backup => PloverAbi.RoleBackup,
        OperatorRole.Joining => PloverAbi.RoleJoining,
        OperatorRole.Probe => PloverAbi.RoleProbe,
        _ => PloverAbi.RoleStarting,
    };
}
