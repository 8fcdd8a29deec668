using System.Buffers.Binary;
using System.Text;
using Plover.Consensus;
using Plover.Idle;
using Plover.Node;
using Plover.Sync;

namespace Plover.Tests.Replica.Core;

/// <summary>
/// Two <see cref="ReplicaCore"/>s (nodes 1 and 2; the witness, node 3, lives only in the consensus model) over
/// synthetic consensus, sync engine, VMs and output guards, all stepped by hand: nothing happens by itself. Every
/// event a core takes and every action it returns goes to <see cref="Trace"/> (the scenario output), and the
/// safety invariants are checked after every action; a violation goes to <see cref="Violations"/> and the trace.
/// A guest answers every input with one output frame; inputs are numbered in proposal order (their frames carry the
/// number), so order and duplicates show.
/// </summary>
internal sealed class ReplicaSim
{
    public sealed class Job
    {
        public required SyncRequest Request { get; init; }
        public required List<int> StateAtCut { get; init; }   // the guest's inputs when it stopped at the cut
        public bool ResumedEarly { get; set; }
    }

    public sealed class Node
    {
        public required int Id { get; init; }
        public required ReplicaCore Core { get; set; }
        public bool Alive { get; set; } = true;
        public int Delivered { get; set; }           // log entries handed to the core
        public bool CanCampaign { get; set; } = true;
        public Ballot Ballot { get; set; }           // what consensus told this node
        public bool VmRunning { get; set; }
        public List<int> Inputs { get; set; } = new();   // the guest's state: input numbers taken, in order
        public bool RanSinceSync { get; set; }       // the VM ran since this node's last completed sync (its dirt)
        public int LastInjected { get; set; }        // this incarnation's last input number (order check)
        public List<Job> Jobs { get; } = new();      // the engine's queue; the first one runs
        public GuardState Guard { get; set; } = GuardState.Holding;
        public bool GuardPrimary { get; set; }
        public List<int> Held { get; } = new();      // answers the guard holds, by input number
        public bool IdleArmed { get; set; }
        public bool JoinRuns { get; set; }           // from the join's RunSync until the core hears it completed
        public Queue<ReplicaEvent> Inbox { get; } = new();
        public List<string> Events { get; } = new();
        public int Announces { get; set; }
        public override string ToString() => $"node {Id}";
    }

    public enum GuardState { Holding, Unprotected, Fenced }

    private readonly ReplicaOptions _options;
    private readonly List<(EntryType Type, byte[] Payload)> _proposed = new();
    private int _nextInput;

    public ReplicaSim(bool idleMonitor = true, long backupLossMs = 1000, long retryAfterAbortMs = 500,
                      bool checkpoint = false, AdaptiveOptions? adaptive = null, bool staleBackup = false)
    {
        _staleBackup = staleBackup;
        _options = new ReplicaOptions
        {
            Role = ReplicaRole.Primary, PeerId = 2, BackupLoss = TimeSpan.FromMilliseconds(backupLossMs),
            RetryAfterAbort = TimeSpan.FromMilliseconds(retryAfterAbortMs),
            VcpuThreadIds = idleMonitor ? [1] : null, Idle = idleMonitor ? new Plover.Config.SyncConfig(100, 25, 3, 200) : null,
            Log = _ => { }, Sync = new SyncOptions { Checkpoint = checkpoint }, Adaptive = adaptive,
        };
        LeaderBallot = new Ballot(1, 1);
        Leader = 1;
        Nodes = [MakeNode(1, ReplicaRole.Primary, joining: false), MakeNode(2, ReplicaRole.Backup, joining: false)];
        LinkUp = true;
        Connections = 1;
        foreach (var n in Nodes) { StartVm(n); Step(n, ReplicaEvent.Link(true, Connections)); }
        foreach (var n in Nodes) Step(n, ReplicaEvent.Start());
        Pump();
    }

    public Node[] Nodes { get; }
    public List<LogEntry> Log { get; } = new();
    public int Leader { get; private set; }          // 0: none
    public Ballot LeaderBallot { get; private set; }
    public bool LinkUp { get; private set; }
    public long Connections { get; private set; }
    public bool Partitioned { get; private set; }
    public long Now { get; private set; } = 1000;
    public StringBuilder Trace { get; } = new();
    public List<string> Violations { get; } = new();
    /// <summary>Frames released, by term and node.</summary>
    public Dictionary<long, HashSet<int>> ReleasersByTerm { get; } = new();
    public long Released { get; private set; }
    /// <summary>What each completed sync reports to the primary's core (adaptive mode's accounting): bytes on the sync
    /// link, and the pages the primary had dirty (what a checkpoint sends, at 4104 bytes each).</summary>
    public long SyncWireBytes { get; set; } = 100_000;
    public ulong PrimaryDirtyPages { get; set; } = 100;

    public Node this[int id] => Nodes[id - 1];
    public Node? Peer(Node n) => Nodes[2 - n.Id];

    private readonly bool _staleBackup;   // the fresh backup's drive images are not known to be its primary's

    private Node MakeNode(int id, ReplicaRole role, bool joining)
    {
        bool stale = _staleBackup && role == ReplicaRole.Backup && !joining;   // fresh, not a restart (a restart joins)
        var options = new ReplicaOptions
        {
            Role = role, Joining = joining, ImagesStale = stale, PeerId = 3 - id, BackupLoss = _options.BackupLoss, RetryAfterAbort = _options.RetryAfterAbort,
            VcpuThreadIds = _options.VcpuThreadIds, Idle = _options.Idle, Log = _options.Log, Sync = _options.Sync, Adaptive = _options.Adaptive,
        };
        var status = new ConsensusStatus(Leader == id ? ConsensusRole.Leader : ConsensusRole.Follower, LeaderBallot, Leader, null);
        return new Node
        {
            Id = id, Core = new ReplicaCore(options, id, nicCount: 1, status), Ballot = LeaderBallot, GuardPrimary = role == ReplicaRole.Primary,
            CanCampaign = !joining && !stale,
        };
    }

    // ------------------------------------------------------------------ stepping

    /// <summary>Steps one event into a node's core and executes what it returns.</summary>
    public void Step(Node n, in ReplicaEvent e)
    {
        if (!n.Alive) return;
        Trace.Append($"{n.Id} <- {ReplicaText.Event(e)}\n");
        if (e is { Kind: ReplicaEventKind.SyncFinished, Request.IsJoin: true, Result.Completed: true }) n.JoinRuns = false;
        n.Core.Step(e);
        var actions = n.Core.Actions.ToArray();
        n.Core.Actions.Clear();
        foreach (var a in actions)
        {
            Trace.Append($"  {ReplicaText.Action(a)}\n");
            Execute(n, a);
        }
        CheckNode(n);
    }

    /// <summary>Steps what the executed actions queued (sync ends, refused proposals, continues) until none is left.</summary>
    public void Pump()
    {
        for (bool any = true; any;)
        {
            any = false;
            foreach (var n in Nodes)
                while (n.Alive && n.Inbox.TryDequeue(out var e)) { Step(n, e); any = true; }
        }
    }

    private void Execute(Node n, in ReplicaAction a)
    {
        switch (a.Kind)
        {
            case ReplicaActionKind.StopVm: n.VmRunning = false; break;
            case ReplicaActionKind.StartVm: StartVm(n); break;
            case ReplicaActionKind.Inject: Inject(n, a.Frame.Span); break;
            case ReplicaActionKind.RunSync:
                if (n.VmRunning) Violation($"node {n.Id} runs a sync ({Describe(a.Request!)}) with its VM running");
                n.Jobs.Add(new Job { Request = a.Request!, StateAtCut = new List<int>(n.Inputs) });
                if (a.Request!.IsJoin) n.JoinRuns = true;
                break;
            case ReplicaActionKind.CloseSyncConnection: CutLink(); break;
            case ReplicaActionKind.ProposeSync: Propose(n, EntryType.Sync, EntryPayloads.EncodeSync(a.Epoch, a.NextMode), a.Purpose); break;
            case ReplicaActionKind.ProposeRole: Propose(n, EntryType.Role, EntryPayloads.EncodeRole(LeaderBallot, n.Id, a.Node), a.Purpose); break;
            case ReplicaActionKind.GuardProtect: if (n.Guard == GuardState.Unprotected) n.Guard = GuardState.Holding; break;
            case ReplicaActionKind.GuardRunUnprotected:
                if (n.Guard == GuardState.Fenced) break;
                if (!n.GuardPrimary) Violation($"node {n.Id} runs unprotected as a backup");
                n.Guard = GuardState.Unprotected;
                ReleaseHeld(n, int.MaxValue, unprotected: true);
                break;
            case ReplicaActionKind.GuardFence: if (n.GuardPrimary) n.Guard = GuardState.Fenced; break;
            case ReplicaActionKind.GuardPromote:
                if (n.Guard == GuardState.Fenced) Violation($"node {n.Id} promoted with a fenced guard");
                n.GuardPrimary = true;
                n.Guard = GuardState.Unprotected;
                ReleaseHeld(n, int.MaxValue, unprotected: true);
                break;
            case ReplicaActionKind.GuardDemote:
                n.GuardPrimary = false;
                n.Guard = GuardState.Holding;
                n.Held.Clear();
                break;
            case ReplicaActionKind.Announce: n.Announces++; break;
            case ReplicaActionKind.StartIdleMonitor: n.IdleArmed = true; break;
            case ReplicaActionKind.StopIdleMonitor: n.IdleArmed = false; break;
            case ReplicaActionKind.RearmIdleMonitor: n.IdleArmed = n.Core.IdleMonitorRunning; break;
            case ReplicaActionKind.SetCanCampaign: n.CanCampaign = a.Flag; break;
            case ReplicaActionKind.InstallSnapshot: n.Delivered = (int)Math.Max(n.Delivered, Math.Min(a.Index, Log.Count)); break;
            case ReplicaActionKind.Yield: n.Inbox.Enqueue(ReplicaEvent.Continue()); break;
            case ReplicaActionKind.Event: n.Events.Add(a.Text!); break;
        }
    }

    /// <summary>vm_start through the checkpoint gate (<see cref="PassiveVmGate"/>): a backup's VM in checkpoint mode
    /// stays stopped.</summary>
    private static void StartVm(Node n)
    {
        if (n.Core.CheckpointMode && n.Core.Role == ReplicaRole.Backup) return;
        n.VmRunning = true;
        n.RanSinceSync = true;
    }

    private void Inject(Node n, ReadOnlySpan<byte> frame)
    {
        int input = BinaryPrimitives.ReadInt32LittleEndian(frame);
        if (n.JoinRuns) Violation($"node {n.Id} injected input {input} while joining");
        if (!n.VmRunning) Violation($"node {n.Id} injected input {input} into a stopped VM");
        if (input <= n.LastInjected) Violation($"node {n.Id} injected input {input} after input {n.LastInjected} (out of order or twice)");
        n.LastInjected = input;
        n.Inputs.Add(input);
        // The guest answers at once; an unprotected primary lets the answer out, else the guard holds it.
        n.Held.Add(input);
        if (n.Guard == GuardState.Unprotected && n.GuardPrimary) ReleaseHeld(n, int.MaxValue, unprotected: true);
        else n.Inbox.Enqueue(ReplicaEvent.OutputHeld());
    }

    /// <summary>Lets out the held answers to inputs up to through; unprotected ones need a committed ROLE(self, no backup).</summary>
    private void ReleaseHeld(Node n, int through, bool unprotected) => ReleaseHeld(n, i => i <= through, unprotected);

    private void ReleaseHeld(Node n, Predicate<int> covered, bool unprotected)
    {
        var frames = n.Held.Where(i => covered(i)).ToList();
        if (frames.Count == 0) return;
        if (n.Guard == GuardState.Fenced) { Violation($"node {n.Id} released through a fenced guard"); return; }
        bool alone = LatestRole() is { } role && role.Primary == n.Id && role.Backup == 0;
        if (unprotected && !alone)
            Violation($"node {n.Id} released {frames.Count} frame(s) unprotected, but the latest committed ROLE is {RoleText(LatestRole())}");
        long term = n.Ballot.Round;
        if (!ReleasersByTerm.TryGetValue(term, out var who)) ReleasersByTerm[term] = who = new HashSet<int>();
        who.Add(n.Id);
        if (who.Count > 1) Violation($"two nodes released output in term {term}");
        n.Held.RemoveAll(covered);
        Released += frames.Count;
        Trace.Append($"  (node {n.Id} releases {frames.Count} frame(s){(unprotected ? " unprotected" : "")})\n");
    }

    private void Propose(Node n, EntryType type, byte[] payload, ProposalPurpose purpose)
    {
        if (Leader == n.Id) _proposed.Add((type, payload));
        else n.Inbox.Enqueue(ReplicaEvent.ProposalRefused(purpose));
    }

    private void Violation(string what)
    {
        Violations.Add(what);
        Trace.Append($"  SAFETY VIOLATION: {what}\n");
    }

    /// <summary>After every step: role flags agree with each other.</summary>
    private void CheckNode(Node n)
    {
        var c = n.Core;
        if (c.IsJoining && c.Role == ReplicaRole.Primary) Violation($"node {n.Id} is a joining primary");
        if (c.RunsAlone && c.Role != ReplicaRole.Primary) Violation($"node {n.Id} runs alone as a backup");
        if (c.CheckpointMode && c.Role == ReplicaRole.Backup && n.VmRunning) Violation($"node {n.Id}'s VM runs as a checkpoint backup");
        int inFlight = n.Jobs.Count + n.Inbox.Count(e => e.Kind == ReplicaEventKind.SyncFinished);   // ended, not yet told
        if (c.SyncsInFlight != inFlight) Violation($"node {n.Id} counts {c.SyncsInFlight} syncs in flight, its engine has {inFlight}");
    }

    // ------------------------------------------------------------------ the world: consensus, link, engines, time

    /// <summary>An input frame arrives at the primary (the batcher proposes it; the core is not involved).</summary>
    public bool Input()
    {
        var p = Leader == 0 ? null : this[Leader];
        if (p is null || !p.Alive || p.Core.Role != ReplicaRole.Primary || p.Core.IsFenced || !p.Core.IsStarted) return false;
        if (p.Core.CheckpointMode)
        {
            // Checkpointing: the frame goes straight into the primary's guest (Replica.OnFrameToGuest), no entry. A
            // stopped guest (at a cut) loses it, as QEMU drops frames for a stopped VM.
            ++_nextInput;
            if (!p.VmRunning) { Trace.Append($"  (input {_nextInput} lost: node {p.Id}'s VM is stopped)\n"); return true; }
            p.Inputs.Add(_nextInput);
            p.Held.Add(_nextInput);
            Trace.Append($"  (input {_nextInput} passes straight into node {p.Id}'s guest)\n");
            Step(p, ReplicaEvent.FramePassed());
            if (p.Guard == GuardState.Unprotected && p.GuardPrimary) ReleaseHeld(p, int.MaxValue, unprotected: true);
            else p.Inbox.Enqueue(ReplicaEvent.OutputHeld());
            Pump();
            return true;
        }
        var frame = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(frame, ++_nextInput);
        _proposed.Add((EntryType.Input, EntryPayloads.EncodeInput(0, [frame])));
        return true;
    }

    /// <summary>What the leader proposed commits (consensus is not modelled further: a majority always answers).</summary>
    public List<LogEntry> Commit()
    {
        var added = new List<LogEntry>();
        if (Leader == 0) return added;
        foreach (var (type, payload) in _proposed)
        {
            var entry = new LogEntry(Log.Count + 1, LeaderBallot, type, payload);
            Log.Add(entry);
            added.Add(entry);
        }
        _proposed.Clear();
        return added;
    }

    public void Deliver(Node n, int max = int.MaxValue)
    {
        for (int k = 0; k < max && n.Alive && n.Delivered < Log.Count; k++)
        {
            var entry = Log[n.Delivered];
            n.Delivered++;
            Step(n, ReplicaEvent.Committed(entry));
        }
        Pump();
    }

    public (int Primary, int Backup)? LatestRole()
    {
        for (int i = Log.Count - 1; i >= 0; i--)
            if (Log[i].Type == EntryType.Role)
            {
                var (_, p, b) = EntryPayloads.DecodeRole(Log[i].Payload.Span);
                return (p, b);
            }
        return null;
    }

    public static string RoleText((int Primary, int Backup)? r) =>
        r is { } x ? $"primary={x.Primary} backup={(x.Backup == 0 ? "none" : x.Backup.ToString())}" : "none";

    /// <summary>Why node id may not lead (null: it may): down, barred by itself (joining), or dropped by the latest ROLE.</summary>
    public string? CannotLead(int id)
    {
        var n = this[id];
        if (!n.Alive) return "down";
        if (!n.CanCampaign) return "does not campaign";
        if (LatestRole() is { } r && r.Primary != id && r.Backup != id) return $"dropped by ROLE {RoleText(r)}";
        if (Leader == id) return "leads already";
        return null;
    }

    /// <summary>Node id wins an election: the old leader is fenced (HigherBallot), the new one proposes ROLE(self, none).</summary>
    public void Elect(int id)
    {
        if (Leader != 0) Depose(FenceReason.HigherBallot);
        LeaderBallot = new Ballot(LeaderBallot.Round + 1, id);
        Leader = id;
        _proposed.Clear();
        _proposed.Add((EntryType.Role, EntryPayloads.EncodeRole(LeaderBallot, id)));
        foreach (var n in Nodes.Where(n => n.Alive))
        {
            n.Ballot = LeaderBallot;
            Step(n, ReplicaEvent.ConsensusChanged(new ConsensusStatus(n.Id == id ? ConsensusRole.Leader : ConsensusRole.Follower, LeaderBallot, id, null)));
        }
        Pump();
    }

    /// <summary>The leader loses its quorum (check-quorum): it is fenced and nobody leads.</summary>
    public void LoseQuorum()
    {
        if (Leader == 0) return;
        Depose(FenceReason.LostQuorum);
        Pump();
    }

    private void Depose(FenceReason reason)
    {
        var old = this[Leader];
        Leader = 0;
        _proposed.Clear();
        if (!old.Alive) return;
        // As the driver does on the consensus thread: the guard first, then the event.
        if (old.Core.Role == ReplicaRole.Primary && old.GuardPrimary) old.Guard = GuardState.Fenced;
        Step(old, ReplicaEvent.ConsensusChanged(new ConsensusStatus(ConsensusRole.Follower, LeaderBallot, 0, null)));
        if (old.Core.Role == ReplicaRole.Primary) Step(old, ReplicaEvent.Fenced(new Fence(LeaderBallot, reason)));
    }

    public void Crash(Node n)
    {
        if (!n.Alive) return;
        n.Alive = false;
        n.Jobs.Clear();
        n.Inbox.Clear();
        if (Leader == n.Id) { Leader = 0; _proposed.Clear(); }
        CutLink();
        Pump();
    }

    /// <summary>A crashed node comes back without state: a joining backup with an empty log.</summary>
    public void Restart(Node n)
    {
        if (n.Alive) Crash(n);
        var fresh = MakeNode(n.Id, ReplicaRole.Backup, joining: true);
        n.Core = fresh.Core;
        n.Alive = true;
        n.Delivered = 0;
        n.CanCampaign = false;
        n.Ballot = LeaderBallot;
        n.VmRunning = false;
        n.Inputs = new List<int>();
        n.LastInjected = 0;
        n.Guard = GuardState.Holding;
        n.GuardPrimary = false;
        n.Held.Clear();
        n.IdleArmed = false;
        n.JoinRuns = false;
        Step(n, ReplicaEvent.Link(LinkUp, Connections));
        Step(n, ReplicaEvent.Start());
        Pump();
    }

    /// <summary>The sync connection closes: every sync in flight aborts (the join waits for a primary sync, then aborts too).</summary>
    public void CutLink()
    {
        bool was = LinkUp;
        LinkUp = false;
        foreach (var n in Nodes.Where(n => n.Alive))
        {
            foreach (var job in n.Jobs.ToArray()) Abort(n, job);
            if (was) n.Inbox.Enqueue(ReplicaEvent.Link(false, Connections));
        }
    }

    /// <summary>The sync link reconnects (a new connection: the primary takes it as a (re)joined backup).</summary>
    public void Reconnect()
    {
        if (LinkUp || Partitioned || Nodes.Any(n => !n.Alive)) return;
        LinkUp = true;
        Connections++;
        foreach (var n in Nodes) Step(n, ReplicaEvent.Link(true, Connections));
        Pump();
    }

    public void Partition(bool on)
    {
        Partitioned = on;
        if (on) { CutLink(); Pump(); }
    }

    public void Tick(long ms)
    {
        Now += ms;
        foreach (var n in Nodes.Where(n => n.Alive))
        {
            var peer = Peer(n)!;
            Step(n, ReplicaEvent.Tick(Now, backupAnswering: peer.Alive && !Partitioned, guardHolding: n.Guard == GuardState.Holding));
        }
        Pump();
    }

    /// <summary>The idle monitor fires, if armed (it then waits for a re-arm).</summary>
    public bool Idle(Node n, SyncTrigger trigger)
    {
        if (!n.Alive || !n.IdleArmed) return false;
        n.IdleArmed = false;
        Step(n, ReplicaEvent.Idle(trigger));
        Pump();
        return true;
    }

    /// <summary>The primary's guest resumes while its head sync goes on (early resume).</summary>
    public bool ResumeEarly(Node n)
    {
        if (!n.Alive || n.Jobs.Count == 0 || n.Jobs[0] is not { Request.IsJoin: false, ResumedEarly: false } job || n.Core.Role != ReplicaRole.Primary)
            return false;
        job.ResumedEarly = true;
        n.VmRunning = true;
        Step(n, ReplicaEvent.ResumedEarly(job.Request));
        Pump();
        return true;
    }

    /// <summary>The two head syncs that belong together complete: the backup takes the primary's state at the cut
    /// and acks; the primary releases the answers up to the cut. False if no such pair runs.</summary>
    public bool CompleteSync()
    {
        var p = Nodes.FirstOrDefault(n => n.Alive && n.Jobs.Count > 0 && !n.Jobs[0].Request.IsJoin && n.Core.Role == ReplicaRole.Primary);
        var b = p is null ? null : Peer(p);
        if (p is null || b is null || !b.Alive || b.Jobs.Count == 0 || !LinkUp) return false;
        var pj = p.Jobs[0];
        var bj = b.Jobs[0];
        var pr = pj.Request;
        bool join = bj.Request.IsJoin;
        if (join ? !pr.FullSync : bj.Request.Epoch != pr.Epoch) return false;
        if (!join && (bj.Request.Checkpoint != pr.Checkpoint || bj.Request.NextCheckpoint != pr.NextCheckpoint))
            Violation($"sync e{pr.Epoch}: the replicas disagree on its mode (primary {pr.Checkpoint}/{pr.NextCheckpoint}, backup {bj.Request.Checkpoint}/{bj.Request.NextCheckpoint})");
        // A checkpoint that is not full sends the primary's dirt and, only if the backup says so, the backup's: if
        // its VM ran since its last completed sync (a switch into checkpointing whose sync aborted), leaving that
        // out would leave pages the backup changed unsent.
        if (!join && pr.Checkpoint == true && !pr.FullSync && b.RanSinceSync && !bj.Request.BackupOwnDirt)
            Violation($"node {b.Id}: checkpoint sync e{pr.Epoch} leaves out the backup's own dirt, but its VM ran since its last completed sync");
        // A checkpoint backup's guest takes no inputs: its state is the last checkpoint.
        if (!join && pr.Checkpoint != true && !bj.StateAtCut.SequenceEqual(pj.StateAtCut))
            Violation($"sync e{pr.Epoch}: the backup's guest took other inputs than the primary's before the cut");
        if (!join && bj.Request.InputDigest != pr.InputDigest) Violation($"sync e{pr.Epoch}: input digests differ at the cut");
        p.Jobs.RemoveAt(0);
        b.Jobs.RemoveAt(0);
        b.Inputs = new List<int>(pj.StateAtCut);
        b.LastInjected = pj.StateAtCut.Count > 0 ? pj.StateAtCut[^1] : 0;
        Trace.Append($"sync e{pr.Epoch} at {pr.LogIndex} completes{(join ? " (join)" : "")}\n");
        // The answers to what the primary's guest took before the cut: INPUT entries up to the SYNC entry, and in
        // checkpoint mode the frames that went straight in.
        var atCut = new HashSet<int>(pj.StateAtCut);
        if (p.Guard == GuardState.Holding && p.GuardPrimary) ReleaseHeld(p, atCut.Contains, unprotected: false);
        b.Held.RemoveAll(atCut.Contains);
        if (!pj.ResumedEarly) p.VmRunning = true;   // an early-resumed guest runs already (or stopped at a later SYNC)
        b.RanSinceSync = false;   // the apply cleared its dirt
        bool next = pr.NextCheckpoint ?? pr.Checkpoint ?? false;
        if (!(join && next)) StartVm(b);   // the engine keeps a joining backup of a checkpointing cluster stopped
        long wire = pr.Checkpoint == true ? (long)PrimaryDirtyPages * 4104 : SyncWireBytes;
        p.Inbox.Enqueue(ReplicaEvent.SyncFinished(pr, new SyncResult(true, FullSync: pr.FullSync, Epoch: pr.Epoch, LogIndex: pr.LogIndex, InputDigest: pr.InputDigest)
            { NextCheckpoint = next, WireBytes = wire, PrimaryDirtyPages = PrimaryDirtyPages }));
        b.Inbox.Enqueue(ReplicaEvent.SyncFinished(bj.Request, new SyncResult(true, FullSync: pr.FullSync || join, Joined: join, Epoch: pr.Epoch,
            LogIndex: pr.LogIndex, InputDigest: pr.InputDigest) { NextCheckpoint = next, WireBytes = wire }));
        Pump();
        return true;
    }

    /// <summary>The backup's running sync is for an older cut than the primary's: it ends as superseded, keeping the
    /// link (and the primary's SyncBegin, for the backup's sync of that cut). False if that is not the case.</summary>
    public bool Supersede()
    {
        var p = Nodes.FirstOrDefault(n => n.Alive && n.Jobs.Count > 0 && !n.Jobs[0].Request.IsJoin && n.Core.Role == ReplicaRole.Primary);
        var b = p is null ? null : Peer(p);
        if (p is null || b is null || !b.Alive || !LinkUp || b.Jobs is not [{ Request.IsJoin: false } bj, ..] ||
            bj.Request.Epoch >= p.Jobs[0].Request.Epoch)
            return false;
        b.Jobs.RemoveAt(0);
        StartVm(b);
        Trace.Append($"{Describe(bj.Request)} is superseded at node {b.Id} (the primary runs e{p.Jobs[0].Request.Epoch})\n");
        b.Inbox.Enqueue(ReplicaEvent.SyncFinished(bj.Request, new SyncResult(false, Error: "superseded")));
        Pump();
        return true;
    }

    /// <summary>A node's head sync aborts (a timeout, an error). As the engine does, the abort closes the sync
    /// connection, so every sync in flight on either side aborts too; without a connection only this one does.</summary>
    public bool AbortSync(Node n)
    {
        if (!n.Alive || n.Jobs.Count == 0) return false;
        if (LinkUp) CutLink();
        else Abort(n, n.Jobs[0]);
        Pump();
        return true;
    }

    /// <summary>The engine restarts the VM if it had stopped it (not a join's, not an early-resumed one's).</summary>
    private void Abort(Node n, Job job)
    {
        n.Jobs.Remove(job);
        if (!job.Request.IsJoin && !job.ResumedEarly) StartVm(n);
        Trace.Append($"{Describe(job.Request)} aborts at node {n.Id}\n");
        n.Inbox.Enqueue(ReplicaEvent.SyncFinished(job.Request, new SyncResult(false, Error: "aborted")));
    }

    public static string Describe(SyncRequest r) => r.IsJoin ? "join" : $"sync e{r.Epoch} at {r.LogIndex}";

    public string State()
    {
        var sb = new StringBuilder();
        sb.Append($"consensus: leader={(Leader == 0 ? "none" : Leader.ToString())} ballot={LeaderBallot} log={Log.Count} role={RoleText(LatestRole())} " +
                  $"link={(LinkUp ? "up" : "down")}#{Connections}{(Partitioned ? " partitioned" : "")}\n");
        foreach (var n in Nodes)
        {
            if (!n.Alive) { sb.Append($"{n.Id}: down\n"); continue; }
            var c = n.Core;
            sb.Append($"{n.Id}: {c.Describe()}{(c.IsFenced ? " fenced" : "")}{(c.RunsAlone ? " alone" : "")} applied={c.LastAppliedIndex} " +
                      $"epoch={c.LastSyncEpoch} pending={c.PendingEntries} syncs={n.Jobs.Count}{(c.HeldAtCut ? " held-at-cut" : "")} " +
                      $"vm={(n.VmRunning ? "running" : "stopped")} guard={n.Guard.ToString().ToLowerInvariant()} held={n.Held.Count} " +
                      $"inputs={n.Inputs.Count}{(n.IdleArmed ? " idle-armed" : "")}{(c.CheckpointMode ? " mode=checkpoint" : "")}\n");
        }
        return sb.ToString().TrimEnd();
    }
}
