using Plover.Consensus;

namespace Plover.Tests.Consensus;

internal sealed class SimInvariantException(string message) : Exception(message);

/// <summary>
/// Three consensus nodes (1 = primary, 2 = backup, 3 = witness) on a <see cref="SimNetwork"/> with one virtual
/// clock. It drives each node (deliver due messages, tick, drain Ready, Advance), can crash and restart nodes and
/// checks the safety invariants after every step:
///  - no two nodes ever commit different values at one index, and each node applies contiguously;
///  - at most one node ever leads a given ballot, and the witness never leads;
///  - a node that becomes leader holds every entry any node has committed (nothing committed is lost);
///  - a node fenced in a ballot never leads (so never proposes or commits) in that ballot again.
/// Durability model: a node's accepted log and promised ballot are durable. Crashing exports them
/// (<see cref="ConsensusNode.ExportDurableState"/>) and a restart builds a new node from them; everything
/// else (in-flight messages to it, timers, leader state, candidacies) is lost. <see cref="RestartEmpty"/> loses
/// the durable state too (what a Plover process restart does).
/// </summary>
internal sealed class SimCluster
{
    public const int Primary = 1, Backup = 2, Witness = 3;
    public static readonly int[] Ids = [Primary, Backup, Witness];

    private readonly int _seed;
    private readonly Random _random;
    private readonly ConsensusNode?[] _nodes = new ConsensusNode?[4];
    private readonly DurableState?[] _saved = new DurableState?[4];
    private readonly long[] _appliedSeen = new long[4];
    private readonly Dictionary<long, LogEntry> _committed = new();
    private readonly Dictionary<Ballot, int> _ballotLeaders = new();
    private readonly HashSet<Ballot>[] _fenced = [new(), new(), new(), new()];
    private long _maxCommitted;

    public SimCluster(int seed, Func<int, ConsensusConfig>? configFor = null)
    {
        _seed = seed;
        _random = new Random(seed);
        Network = new SimNetwork(new Random(seed * 7919 + 1));
        ConfigFor = configFor ?? DefaultConfig;
        foreach (int id in Ids) _nodes[id] = new ConsensusNode(ConfigFor(id), new Random(seed * 31 + id));
    }

    public SimNetwork Network { get; }
    public Func<int, ConsensusConfig> ConfigFor { get; }
    public long Now { get; private set; }
    public long MaxCommitted => _maxCommitted;
    public IReadOnlyDictionary<long, LogEntry> Committed => _committed;
    public List<(int Node, Fence Fence)> Fences { get; } = new();
    public List<(int Node, SnapshotNeeded Need)> SnapshotRequests { get; } = new();
    /// <summary>Install a snapshot when a node reports SnapshotNeeded (what the syncvm layer would do).</summary>
    public bool AutoInstallSnapshots { get; set; } = true;

    public static ConsensusConfig DefaultConfig(int self) => new()
    {
        SelfId = self,
        Members = [new(Primary, true), new(Backup, true), new(Witness, false)],
        InitialLeaderId = Primary,
    };

    public ConsensusNode? Node(int id) => _nodes[id];
    public ConsensusNode Live(int id) => _nodes[id] ?? throw new InvalidOperationException($"node {id} is down");
    public bool IsUp(int id) => _nodes[id] is not null;
    public long AppliedBy(int id) => _appliedSeen[id];

    /// <summary>The live node that believes it leads in the highest ballot, or null.</summary>
    public ConsensusNode? Leader()
    {
        ConsensusNode? best = null;
        foreach (int id in Ids)
            if (_nodes[id] is { IsLeader: true } n && (best is null || n.Ballot > best.Ballot)) best = n;
        return best;
    }

    public void Crash(int id)
    {
        var n = _nodes[id] ?? throw new InvalidOperationException($"node {id} already down");
        _saved[id] = n.ExportDurableState();
        _nodes[id] = null;
    }

    public void Restart(int id)
    {
        if (_nodes[id] is not null) throw new InvalidOperationException($"node {id} already up");
        var n = new ConsensusNode(ConfigFor(id), new Random(_seed * 31 + id + (int)Now * 3), _saved[id]);
        _nodes[id] = n;
        _appliedSeen[id] = n.AppliedIndex;
        Check(n);
    }

    /// <summary>Restarts a node that lost its memory (<see cref="DurableState.Empty"/>); its applied state starts over.</summary>
    public void RestartEmpty(int id)
    {
        _saved[id] = DurableState.Empty;
        Restart(id);
    }

    /// <summary>Proposes on node id if it leads; returns the index or 0.</summary>
    public long Propose(int id, EntryType type, ReadOnlySpan<byte> payload)
    {
        if (_nodes[id] is not { } n || !n.TryPropose(type, payload, out long index)) return 0;
        Drain(n);
        return index;
    }

    /// <summary>What syncvm does after a full state transfer: the node's state now covers index.</summary>
    public void InstallSnapshot(int id, long index)
    {
        var n = Live(id);
        n.InstallSnapshot(index);
        _appliedSeen[id] = n.AppliedIndex;
        Drain(n);
    }

    public void Compact(int id, long index)
    {
        Live(id).Compact(index);
    }

    public void RunTicks(int ticks)
    {
        for (int i = 0; i < ticks; i++) Step();
    }

    /// <summary>Runs until cond holds (true) or maxTicks pass (false).</summary>
    public bool RunUntil(Func<bool> cond, int maxTicks)
    {
        for (int i = 0; i < maxTicks; i++)
        {
            if (cond()) return true;
            Step();
        }
        return cond();
    }

    /// <summary>One tick of virtual time: deliver what is due, tick every live node, drain outputs.</summary>
    public void Step()
    {
        Now++;
        while (Network.TryDeliver(Now, out var m))
        {
            if (_nodes[m.To] is not { } target) continue;   // down: lost
            target.Step(m);
            Drain(target);
        }
        foreach (int id in Ids)
        {
            if (_nodes[id] is not { } n) continue;
            n.Tick();
            Drain(n);
        }
    }

    private void Drain(ConsensusNode n)
    {
        for (int rounds = 0; n.HasReady; rounds++)
        {
            // One GetReady/Advance takes everything; a second round only follows a snapshot installed below.
            if (rounds > 3) Fail($"node {n.Id} keeps reporting HasReady");
            var ready = n.GetReady();
            foreach (var m in ready.Messages) Network.Send(m.Detach(), Now);   // entries are lent until Advance
            if (ready.SnapshotInstalled is { } skipped)
            {
                if (n.Config.Self.CanLead) Fail($"node {n.Id} installed a snapshot by itself but runs a VM");
                _appliedSeen[n.Id] = Math.Max(_appliedSeen[n.Id], skipped);
            }
            if (ready.Recovered is { } skippedTo) OnRecovered(n, skippedTo);
            foreach (var e in ready.CommittedEntries) OnCommitted(n, e);
            if (ready.Fenced is { } f)
            {
                Fences.Add((n.Id, f));
                _fenced[n.Id].Add(f.Ballot);
                if (f.Ballot.NodeId != n.Id) Fail($"node {n.Id} fenced in ballot {f.Ballot} it did not own");
            }
            if (ready.Change is { Role: ConsensusRole.Leader } c) OnBecameLeader(n, c);
            var snap = ready.Snapshot;
            n.Advance();
            if (snap is { } need)
            {
                SnapshotRequests.Add((n.Id, need));
                if (AutoInstallSnapshots) InstallSnapshotFrom(n, need);
            }
        }
        Check(n);
    }

    /// <summary>What syncvm would do: copy the VM state covering need.Index from the node that has it.</summary>
    private void InstallSnapshotFrom(ConsensusNode n, SnapshotNeeded need)
    {
        if (n.IsLeader || _nodes[need.LeaderId] is not { } source) return;
        long index = Math.Min(need.Index, source.AppliedIndex);
        if (index <= n.AppliedIndex || index > _maxCommitted) return;
        n.InstallSnapshot(index);
        _appliedSeen[n.Id] = n.AppliedIndex;
    }

    /// <summary>A node restarted without memory rebuilt its log: what it holds as committed must be what was committed.</summary>
    private void OnRecovered(ConsensusNode n, long skippedTo)
    {
        if (skippedTo > _maxCommitted && skippedTo > 0) Fail($"node {n.Id} recovered past everything committed ({skippedTo} > {_maxCommitted})");
        _appliedSeen[n.Id] = Math.Max(_appliedSeen[n.Id], skippedTo);   // a VM node would take a full sync here
        for (long i = n.FirstIndex; i <= n.CommitIndex; i++)
            if (_committed.TryGetValue(i, out var c) && !n.Log[i].SameValue(c))
                Fail($"node {n.Id} recovered a different value at committed index {i}");
    }

    private void OnCommitted(ConsensusNode n, LogEntry e)
    {
        if (e.Index != _appliedSeen[n.Id] + 1)
            Fail($"node {n.Id} applied index {e.Index} after {_appliedSeen[n.Id]}");
        _appliedSeen[n.Id] = e.Index;
        if (_committed.TryGetValue(e.Index, out var prior))
        {
            if (!prior.SameValue(e)) Fail($"node {n.Id} committed a different value at index {e.Index}: {Describe(e)} vs {Describe(prior)}");
        }
        else
        {
            _committed[e.Index] = e;
            if (e.Index > _maxCommitted) _maxCommitted = e.Index;
        }
    }

    private void OnBecameLeader(ConsensusNode n, StateChange c)
    {
        if (!n.Config.Self.CanLead) Fail($"witness {n.Id} became leader");
        if (c.Ballot.NodeId != n.Id) Fail($"node {n.Id} leads ballot {c.Ballot} owned by another node");
        if (_ballotLeaders.TryGetValue(c.Ballot, out int other) && other != n.Id)
            Fail($"ballot {c.Ballot} led by {other} and {n.Id}");
        _ballotLeaders[c.Ballot] = n.Id;
        // Nothing committed anywhere may be missing from the new leader's log.
        for (long i = Math.Max(n.FirstIndex, 1); i <= _maxCommitted; i++)
        {
            if (!_committed.TryGetValue(i, out var committed)) continue;   // compacted before we saw it
            if (!n.Log.TryGet(i, out var mine)) Fail($"new leader {n.Id} ({c.Ballot}) lacks committed index {i} (last {n.LastIndex})");
            if (!mine.SameValue(committed)) Fail($"new leader {n.Id} ({c.Ballot}) holds a different value at committed index {i}");
        }
    }

    private void Check(ConsensusNode n)
    {
        if (n.IsLeader && !n.Config.Self.CanLead) Fail($"witness {n.Id} is leader");
        if (n.IsLeader && _fenced[n.Id].Contains(n.Ballot)) Fail($"node {n.Id} leads again in fenced ballot {n.Ballot}");
        if (n.CommitIndex > n.LastIndex) Fail($"node {n.Id} commit {n.CommitIndex} beyond its log {n.LastIndex}");
    }

    /// <summary>Every live node's committed log prefix equals the global committed record.</summary>
    public void CheckLogsAgree()
    {
        foreach (int id in Ids)
        {
            if (_nodes[id] is not { } n) continue;
            for (long i = n.FirstIndex; i <= n.CommitIndex; i++)
                if (_committed.TryGetValue(i, out var c) && !n.Log[i].SameValue(c))
                    Fail($"node {id} log differs from the committed value at {i}");
        }
    }

    public void Fail(string what) =>
        throw new SimInvariantException($"seed {_seed}, tick {Now}: {what}\n  " +
            string.Join("\n  ", Ids.Select(id => _nodes[id]?.ToString() ?? $"node {id} down")));

    private static string Describe(LogEntry e) => $"#{e.Index} {e.Type} b={e.Ballot} {Convert.ToHexString(e.Payload.Span)}";
}
