using System.Globalization;
using System.Text.Json;
using Plover.Config;
using Plover.Guard;
using Plover.Metrics;
using Plover.Node;
using Plover.Sync;

namespace Plover.Native.Host;

/// <summary>
/// Admin commands of a replicating node (mode replicate), for operators, the status command, tests and benchmarks:
/// <code>
/// replica                   {role (primary|backup|joining),mode (replicate|checkpoint),startMode,joining,runsAlone,backupId,problem,
///                            consensusRole,ballot,term,leaderId,commitIndex,lastIndex,lastApplied,protected,
///                            fenced,guard,syncLink,lastSyncEpoch,syncsCompleted,syncsAborted,
///                            diskSync:{running,epoch,percent,blocks,blocksDone,blocksSent,bytesSent,chunks,chunksDone,seconds},inputsInjected,
///                            framesInjected,framesPassed,framesStolen,framesDropped,injectFailures,inputDigest,inputDivergences,
///                            inputsDroppedOnError,bytesSent,bytesReceived,traffic:[...],framesReleased,
///                            framesDiscarded,pendingEpochs,commitLatencyUs:{count,mean,p50,p99,p999,max},
///                            syncTriggers:{idle,maxEpoch,nothingNew,refused},roleChanges:{promotions,demotions,joins},
///                            releasedByTerm:{TERM:frames},releaseWindows:[{term,frames,firstUs,lastUs}],
///                            events:[{us,what}]}
/// syncs [SINCE]             {syncs:[...]} every sync kept (at most 1000) whose epoch is above SINCE, oldest first;
///                            times are Unix microseconds
/// sync-now                  {proposed:true} a SYNC entry is proposed (primary and leader only)
/// verify-at-sync            {armed:true} hash all RAM at the next sync point (run it on both replicas)
/// verify-result             {armed,result:null|{epoch,logIndex,inputDigest,digest,hashMs,blocks:[{id,name,pages,digest}],devices:[{name,hash,bytes,alwaysSent}]}}
/// verify-pages ID           {id,hashes:["16 hex digits",...]} the page hashes of block ID from the last result
/// verify-device NAME        {name,bytes,hex} the bytes of device state section NAME from the last result (sections up to 1 KiB)
/// metrics-reset             {} clears the commit-latency histogram (a benchmark's measuring window)
/// fault-at-sync STEP [N]    {armed} test only (QEMU started with PLOVER_FAULT_INJECTION=1): the process kills
///                            itself (SIGKILL) the Nth time its sync engine reaches STEP (a SyncStep name)
/// </code>
/// </summary>
internal sealed unsafe partial class AdminCommands
{
    private const int MaxSyncsPerReply = 1000;

    private void AddReplicaCommands()
    {
        _commands["replica"] = ("replica", _ => ReplicaStatus());
        _commands["syncs"] = ("syncs [SINCE_EPOCH]", Syncs);
        _commands["sync-now"] = ("sync-now", _ => SyncNow());
        _commands["verify-at-sync"] = ("verify-at-sync", _ => VerifyArm());
        _commands["verify-result"] = ("verify-result", _ => VerifyResult());
        _commands["verify-pages"] = ("verify-pages BLOCK_ID", VerifyPages);
        _commands["verify-device"] = ("verify-device SECTION_NAME", VerifyDevice);
        _commands["metrics-reset"] = ("metrics-reset", _ => MetricsReset());
        if (SyncFaultInjection.Enabled)
            _commands["fault-at-sync"] = ("fault-at-sync STEP [OCCURRENCE] (test only: PLOVER_FAULT_INJECTION=1)", FaultAtSync);
    }

    private string FaultAtSync(string[] args)
    {
        if (args.Length is < 1 or > 2 || !Enum.TryParse(args[0], ignoreCase: true, out SyncStep step) || !Enum.IsDefined(step))
            throw new AdminError($"usage: fault-at-sync STEP [OCCURRENCE]; STEP is one of {string.Join(", ", Enum.GetNames<SyncStep>())}");
        int occurrence = 1;
        if (args.Length == 2 && (!int.TryParse(args[1], out occurrence) || occurrence < 1))
            throw new AdminError($"occurrence '{args[1]}' is not a positive integer");
        var faults = Node.Faults ?? throw new AdminError("fault injection is off");
        faults.Arm(step, occurrence);
        using var reply = new AdminReply();
        reply.Json.WriteString("armed", $"{step} #{occurrence}");
        return reply.Finish();
    }

    private QemuReplicaNode Node =>
        _probe.Replica ?? throw new AdminError("the replica has not started yet (machine_ready has not been called)");

    /// <summary>The replica and its driver, once the start-up probe decided how this node enters the cluster.</summary>
    private (QemuReplicaNode Node, Replica Replica, ConsensusDriver Driver) Started()
    {
        var node = Node;
        return node.Replica is { } r && node.Driver is { } d ? (node, r, d)
            : throw new AdminError("the replica is starting: the start-up probe is waiting for its peers");
    }

    /// <summary>The current or last sync whose disk part ran in more than one chunk (a full sync of a large disk).</summary>
    private static void WriteDiskSync(Utf8JsonWriter j, DiskSyncProgress.Snapshot disk)
    {
        j.WriteStartObject("diskSync");
        j.WriteBoolean("running", disk.Running);
        j.WriteNumber("epoch", disk.Epoch);
        j.WriteNumber("percent", disk.Percent);
        j.WriteNumber("blocks", disk.Blocks);
        j.WriteNumber("blocksDone", disk.BlocksDone);
        j.WriteNumber("blocksSent", disk.BlocksSent);
        j.WriteNumber("bytesSent", disk.BytesSent);
        j.WriteNumber("chunks", disk.Chunks);
        j.WriteNumber("chunksDone", disk.ChunksDone);
        j.WriteNumber("seconds", Math.Round(disk.Seconds, 1));
        j.WriteEndObject();
    }

    private string ReplicaStatus()
    {
        var node = Node;
        var status = node.Status();
        using var reply = new AdminReply();
        Utf8JsonWriter j = reply.Json;
        j.WriteNumber("node", _probe.Node.Id);
        j.WriteString("configRole", _probe.Node.Role.Name());
        j.WriteString("role", status.Role);
        Plover.Metrics.WireTraffic.WriteJson(j, node.Traffic.ToWire().ToList());
        j.WriteNumber("inputsDroppedOnError", _probe.InputsDroppedOnError);
        if (node.Disks is { } disks) j.WriteBoolean("diskTorn", disks.Torn);   // a sync is writing (or was, at a crash)
        if (node.Replica is not { } r || node.Driver is not { } d)
        {
            // the start-up probe still runs: no consensus or replica yet, only what it waits for
            j.WriteString("problem", status.Problem);
            j.WriteBoolean("protected", false);
            j.WriteString("guard", "holding");
            return reply.Finish();
        }
        GuardState guard = r.Guard.State;
        j.WriteString("mode", r.Checkpoint ? "checkpoint" : "replicate");
        j.WriteBoolean("adaptive", r.Adaptive);
        j.WriteNumber("modeSwitches", r.ModeSwitches.Total);
        j.WriteNumber("modeSwitchesToCheckpoint", r.ModeSwitches.ToCheckpoint);
        j.WriteString("startMode", node.Mode == StartMode.Join ? "join" : "fresh");
        j.WriteBoolean("joining", r.IsJoining);
        j.WriteBoolean("runsAlone", r.RunsAlone);
        j.WriteNumber("backupId", r.BackupId);
        j.WriteString("problem", status.Problem);
        j.WriteString("consensusRole", d.RoleName);
        j.WriteString("ballot", d.Ballot.ToString());
        j.WriteNumber("term", d.Term);
        j.WriteNumber("leaderId", d.LeaderId);
        j.WriteNumber("commitIndex", d.CommitIndex);
        j.WriteNumber("lastIndex", d.LastIndex);
        j.WriteNumber("lastApplied", r.LastAppliedIndex);
        j.WriteBoolean("protected", status.Protected);
        j.WriteBoolean("fenced", r.IsFenced);
        j.WriteString("guard", guard.ToString().ToLowerInvariant());
        j.WriteBoolean("syncLink", node.SyncLinkConnected);
        j.WriteNumber("lastSyncEpoch", r.LastSyncEpoch);
        j.WriteNumber("syncsCompleted", r.SyncsCompleted);
        j.WriteNumber("syncsAborted", r.SyncsAborted);
        WriteDiskSync(j, r.Engine.DiskProgress.Current);
        j.WriteNumber("inputsInjected", r.InputsInjected);
        j.WriteNumber("framesInjected", r.FramesInjected);
        j.WriteNumber("framesPassed", r.FramesPassed);
        j.WriteNumber("framesStolen", r.FramesStolen);
        j.WriteNumber("framesDropped", r.FramesDropped);
        j.WriteNumber("injectFailures", r.InjectFailures);
        j.WriteNumber("entriesProposed", r.EntriesProposed);
        j.WriteString("inputDigest", Hex(r.InputDigest));
        j.WriteNumber("inputDivergences", r.InputDivergences);
        j.WriteNumber("framesReleased", r.Guard.FramesReleased);
        j.WriteNumber("framesDiscarded", r.Guard.FramesDiscarded);
        j.WriteNumber("pendingEpochs", r.Guard.PendingEpochs);
        j.WriteNumber("messagesSent", d.MessagesSent);
        j.WriteNumber("messagesReceived", d.MessagesReceived);
        j.WriteNumber("messagesDropped", d.MessagesDropped);
        j.WriteNumber("maxTickLatenessUs", Math.Round(d.MaxTickLatenessUs, 1));
        WriteLatency(j, "commitLatencyUs", r.CommitLatency);
        var triggers = r.SyncTriggers;
        j.WriteStartObject("syncTriggers");
        j.WriteNumber("idle", triggers.Idle);
        j.WriteNumber("maxEpoch", triggers.MaxEpoch);
        j.WriteNumber("nothingNew", triggers.NothingNew);
        j.WriteNumber("refused", triggers.Refused);
        j.WriteEndObject();
        var changes = r.RoleChanges;
        j.WriteStartObject("roleChanges");
        j.WriteNumber("promotions", changes.Promotions);
        j.WriteNumber("demotions", changes.Demotions);
        j.WriteNumber("joins", changes.Joins);
        j.WriteEndObject();
        var windows = r.ReleaseWindows;
        j.WriteStartObject("releasedByTerm");
        foreach (var w in windows) j.WriteNumber(w.Term.ToString(CultureInfo.InvariantCulture), w.Frames);
        j.WriteEndObject();
        j.WriteStartArray("releaseWindows");
        foreach (var w in windows)
        {
            j.WriteStartObject();
            j.WriteNumber("term", w.Term);
            j.WriteNumber("frames", w.Frames);
            j.WriteNumber("firstUs", w.FirstUnixUs);
            j.WriteNumber("lastUs", w.LastUnixUs);
            j.WriteEndObject();
        }
        j.WriteEndArray();
        j.WriteStartArray("events");
        foreach (var (us, what) in r.Events)
        {
            j.WriteStartObject();
            j.WriteNumber("us", us);
            j.WriteString("what", what);
            j.WriteEndObject();
        }
        j.WriteEndArray();

        return reply.Finish();
    }

    private static void WriteLatency(Utf8JsonWriter j, string name, LatencyHistogram h)
    {
        j.WriteStartObject(name);
        j.WriteNumber("count", h.Count);
        j.WriteNumber("mean", Math.Round(h.MeanUs, 1));
        j.WriteNumber("p50", Math.Round(h.PercentileUs(0.50), 1));
        j.WriteNumber("p99", Math.Round(h.PercentileUs(0.99), 1));
        j.WriteNumber("p999", Math.Round(h.PercentileUs(0.999), 1));
        j.WriteNumber("max", h.MaxUs);
        j.WriteEndObject();
    }

    private string Syncs(string[] args)
    {
        ulong since = 0;
        if (args.Length > 1 || (args.Length == 1 && !ulong.TryParse(args[0], NumberStyles.None, CultureInfo.InvariantCulture, out since)))
            throw new AdminError("usage: syncs [SINCE_EPOCH]");
        SyncStats[] all = Node.Replica?.Engine.Metrics.Recent() ?? [];
        using var reply = new AdminReply();
        Utf8JsonWriter j = reply.Json;
        j.WriteStartArray("syncs");
        int written = 0;
        foreach (SyncStats s in all)
        {
            if (s.Epoch <= since) continue;
            if (written++ == MaxSyncsPerReply) break;
            WriteSync(j, s);
        }
        j.WriteEndArray();
        j.WriteBoolean("truncated", written > MaxSyncsPerReply);
        return reply.Finish();
    }

    private static void WriteSync(Utf8JsonWriter j, SyncStats s)
    {
        j.WriteStartObject();
        j.WriteNumber("epoch", s.Epoch);
        j.WriteNumber("logIndex", s.LogIndex);
        j.WriteString("outcome", s.Outcome == SyncOutcome.Completed ? "completed" : "aborted");
        if (s.Error is not null) j.WriteString("error", s.Error);
        j.WriteBoolean("fullSync", s.FullSync);
        j.WriteBoolean("checkpoint", s.Checkpoint);
        j.WriteBoolean("nextCheckpoint", s.NextCheckpoint);
        j.WriteBoolean("resumedEarly", s.ResumedEarly);
        j.WriteBoolean("joined", s.Joined);
        j.WriteString("inputDigest", Hex(s.InputDigest));
        j.WriteBoolean("inputsDiverged", s.InputsDiverged);
        j.WriteNumber("startedUs", UnixMicros(s.StartedUtc));
        if (s.OutputUtc is { } output) j.WriteNumber("outputUs", UnixMicros(output)); else j.WriteNull("outputUs");
        j.WriteNumber("outputFrames", s.OutputFrames);
        j.WriteNumber("localDirty", s.LocalDirtyPages);
        j.WriteNumber("remoteDirty", s.RemoteDirtyPages);
        j.WriteNumber("union", s.UnionPages);
        j.WriteNumber("identical", s.IdenticalPages);
        j.WriteNumber("divergent", s.DivergentPages);
        j.WriteNumber("diskUnion", s.DiskUnionBlocks);
        j.WriteNumber("diskDivergent", s.DiskDivergentBlocks);
        j.WriteNumber("diskIdentical", s.DiskIdenticalBlocks);
        j.WriteNumber("diskDirty", s.DiskLocalDirtyBlocks);
        j.WriteNumber("diskWireBytes", s.DiskWireBytes);
        j.WriteNumber("deviceStateBytes", s.DeviceStateBytes);
        j.WriteNumber("deviceStateSavedBytes", s.DeviceStateSavedBytes);
        j.WriteNumber("deviceSections", s.DeviceSections);
        j.WriteNumber("deviceSectionsSent", s.DeviceSectionsSent);
        j.WriteStartObject("wire");
        j.WriteNumber("bitmaps", s.Wire.Bitmaps);
        j.WriteNumber("hashes", s.Wire.Hashes);
        j.WriteNumber("pages", s.Wire.Pages);
        j.WriteNumber("deviceState", s.Wire.DeviceState);
        j.WriteNumber("control", s.Wire.Control);
        j.WriteNumber("total", s.Wire.Total);
        j.WriteEndObject();
        j.WriteStartObject("pauseUs");
        j.WriteNumber("stop", Math.Round(s.Pause.Stop, 1));
        j.WriteNumber("bitmap", Math.Round(s.Pause.Bitmap, 1));
        j.WriteNumber("hash", Math.Round(s.Pause.Hash, 1));
        j.WriteNumber("compare", Math.Round(s.Pause.Compare, 1));
        j.WriteNumber("subBlocks", Math.Round(s.Pause.SubBlocks, 1));
        j.WriteNumber("transfer", Math.Round(s.Pause.Transfer, 1));
        j.WriteNumber("deviceState", Math.Round(s.Pause.DeviceState, 1));
        j.WriteNumber("apply", Math.Round(s.Pause.Apply, 1));
        j.WriteNumber("resume", Math.Round(s.Pause.Resume, 1));
        j.WriteNumber("snapshot", Math.Round(s.Pause.Snapshot, 1));
        j.WriteNumber("mainWait", Math.Round(s.Pause.MainWait, 1));
        j.WriteNumber("deviceLoad", Math.Round(s.Pause.DeviceLoad, 1));
        j.WriteNumber("deviceSave", Math.Round(s.Pause.DeviceSave, 1));
        j.WriteNumber("disk", Math.Round(s.Pause.Disk, 1));
        j.WriteNumber("diskRead", Math.Round(s.Pause.DiskRead, 1));
        j.WriteNumber("guest", Math.Round(s.Pause.Guest, 1));
        j.WriteNumber("total", Math.Round(s.Pause.Total, 1));
        j.WriteEndObject();
        j.WriteStartObject("leadUs");   // how long before the stop each last event of the epoch happened (-1: none)
        j.WriteNumber("inputArrived", s.Lead.InputArrived);
        j.WriteNumber("inputCommitted", s.Lead.InputCommitted);
        j.WriteNumber("inputInjected", s.Lead.InputInjected);
        j.WriteNumber("outputHeld", s.Lead.OutputHeld);
        j.WriteNumber("idleTriggered", s.Lead.IdleTriggered);
        j.WriteNumber("syncProposed", s.Lead.SyncProposed);
        j.WriteEndObject();
        WriteSyncDivergence(j, s);   // AdminCommands.Divergence.cs
        j.WriteEndObject();
    }

    private string SyncNow()
    {
        if (Node.Replica is not { } replica)
            throw new AdminError("cannot propose a sync yet: the replica is starting (the start-up probe waits for its peers)");
        if (!replica.ProposeSync())
            throw new AdminError("cannot propose a sync here (only the leading primary with a connected backup can)");
        using var reply = new AdminReply();
        reply.Json.WriteBoolean("proposed", true);
        return reply.Finish();
    }

    private string VerifyArm()
    {
        var (node, replica, _) = Started();
        var vm = new QemuVmHost(Host);
        QemuDiskHost? disks = OnMain(() => Host.Drives().Length > 0 ? new QemuDiskHost(Host, node: null) : null);
        node.RamCheck.Arm(replica.Engine, node.Memory, _probe.Hasher, () => OnMain(() => SyncPointRamHash.SaveDevices(vm)),
            disks is null ? null : () => SyncPointRamHash.HashDrives(disks, _probe.Hasher, a => OnMain(() => { a(); return 0; })));
        using var reply = new AdminReply();
        reply.Json.WriteBoolean("armed", true);
        return reply.Finish();
    }

    private string VerifyResult()
    {
        QemuReplicaNode node = Node;
        SyncPointRamHash.Result? r = node.RamCheck.Last;
        using var reply = new AdminReply();
        Utf8JsonWriter j = reply.Json;
        j.WriteBoolean("armed", node.RamCheck.Armed);
        if (r is null)
        {
            j.WriteNull("result");
            return reply.Finish();
        }
        j.WriteStartObject("result");
        j.WriteNumber("epoch", r.Epoch);
        j.WriteNumber("logIndex", r.LogIndex);
        j.WriteString("inputDigest", Hex(r.InputDigest));
        j.WriteString("digest", Hex(r.Digest));
        j.WriteNumber("hashMs", Math.Round(r.HashMs, 3));
        j.WriteStartArray("blocks");
        for (int i = 0; i < r.Blocks.Length; i++)
        {
            j.WriteStartObject();
            j.WriteNumber("id", i);
            j.WriteString("name", r.Blocks[i].Name);
            j.WriteNumber("pages", r.Blocks[i].Hashes.Length);
            j.WriteString("digest", Hex(r.Blocks[i].Digest));
            j.WriteEndObject();
        }
        j.WriteEndArray();
        j.WriteStartArray("devices");
        foreach (var d in r.Devices)
        {
            j.WriteStartObject();
            j.WriteString("name", d.Name);
            j.WriteString("hash", Hex(d.Hash));
            j.WriteNumber("bytes", d.Bytes);
            j.WriteBoolean("alwaysSent", d.AlwaysSent);
            j.WriteEndObject();
        }
        j.WriteEndArray();
        j.WriteEndObject();
        return reply.Finish();
    }

    private string VerifyPages(string[] args)
    {
        if (args.Length != 1 || !int.TryParse(args[0], NumberStyles.None, CultureInfo.InvariantCulture, out int id))
            throw new AdminError("usage: verify-pages BLOCK_ID");
        SyncPointRamHash.Result r = Node.RamCheck.Last ?? throw new AdminError("no verify result yet (verify-at-sync first)");
        if (id >= r.Blocks.Length) throw new AdminError($"no block {id} (the result has {r.Blocks.Length})");
        using var reply = new AdminReply();
        reply.Json.WriteNumber("id", id);
        reply.Json.WriteStartArray("hashes");
        foreach (ulong h in r.Blocks[id].Hashes) reply.Json.WriteStringValue(Hex(h));
        reply.Json.WriteEndArray();
        return reply.Finish();
    }

    private string VerifyDevice(string[] args)
    {
        if (args.Length != 1) throw new AdminError("usage: verify-device SECTION_NAME");
        SyncPointRamHash.Result r = Node.RamCheck.Last ?? throw new AdminError("no verify result yet (verify-at-sync first)");
        SyncPointRamHash.Device d = r.Devices.FirstOrDefault(x => x.Name == args[0]) ?? throw new AdminError($"no section {args[0]} in the last result");
        if (d.Data is null) throw new AdminError($"section {d.Name} has {d.Bytes} bytes; only sections up to {SyncPointRamHash.KeptSectionBytes} keep them");
        using var reply = new AdminReply();
        reply.Json.WriteString("name", d.Name);
        reply.Json.WriteNumber("bytes", d.Bytes);
        reply.Json.WriteString("hex", Convert.ToHexString(d.Data));
        return reply.Finish();
    }

    private string MetricsReset()
    {
        Started().Replica.CommitLatency.Reset();
        return new AdminReply().Finish();
    }

    private static string Hex(ulong v) => v.ToString("x16", CultureInfo.InvariantCulture);

    private static long UnixMicros(DateTime utc) => (utc.ToUniversalTime() - DateTime.UnixEpoch).Ticks / 10;
}
