using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Plover.Consensus;
using Plover.Tests.Scenarios;

namespace Plover.Tests.Consensus.Scenarios;

/// <summary>
/// Interprets consensus scenario commands against real <see cref="ConsensusNode"/>s. Like etcd's raft
/// InteractionEnv, and unlike <see cref="SimCluster"/>, nothing happens by itself: messages wait in one queue, in
/// the order they were sent, until a command delivers them; nodes tick only when told. Links can be cut (a message
/// on a cut link is dropped when it would be delivered, as in <see cref="SimNetwork"/>), nodes crash and restart
/// with their durable state or without memory. The safety invariants SimCluster checks are checked here too, after
/// every Ready and every delivery, and a violation is printed in the output ("SAFETY VIOLATION: ...") so that it
/// shows in the expected output instead of hiding in a passing run. Commands are listed in README.md.
/// </summary>
internal sealed class ConsensusScenarioEnv
{
    private sealed class Slot
    {
        public required int Id;
        public required ConsensusConfig Config;
        public ConsensusNode? Node;
        public DurableState? Saved;
        public int Incarnation;
        public long AppliedSeen;
        public SnapshotNeeded? Need;
        public readonly HashSet<Ballot> Fenced = new();
    }

    private readonly StringBuilder _out = new();
    private readonly ScenarioFormat _fmt = new();
    private readonly SortedDictionary<int, Slot> _slots = new();
    private readonly List<Message> _queue = new();
    private readonly SortedSet<(int From, int To)> _cut = new();
    private readonly SortedDictionary<long, LogEntry> _committed = new();
    private readonly Dictionary<Ballot, int> _ballotLeaders = new();
    private int _seed = 1;
    private long _maxCommitted;

    public string Handle(ScenarioCase c)
    {
        _out.Clear();
        if (c.Command != "add-nodes" && _slots.Count == 0) throw new ScenarioUsageException("add-nodes must come first");
        switch (c.Command)
        {
            case "add-nodes": AddNodes(c); break;
            case "state": Allow(c); foreach (var s in _slots.Values) Print(Line(s)); break;
            case "status": Allow(c); Status(Single(c)); break;
            case "log": Allow(c); LogOf(Single(c)); break;
            case "committed": Allow(c); Committed(); break;
            case "propose": Propose(c); break;
            case "tick": TickCommand(c); break;
            case "campaign": Allow(c); Campaign(Single(c)); break;
            case "process-ready": Allow(c); ProcessReadyCommand(c); break;
            case "deliver-msgs": DeliverCommand(c); break;
            case "stabilize": Allow(c); Stabilize(NodesOrAll(c), quiet: c.Args.Any(a => a is { IsBare: true, Key: "quiet" }), prefix: "", null); break;
            case "elapse": Allow(c); Elapse(c); break;
            case "cut": Allow(c); Cut(c); break;
            case "isolate": Allow(c); Isolate(Single(c)); break;
            case "heal": Allow(c); Heal(c); break;
            case "crash": Allow(c); Crash(Single(c)); break;
            case "restart": Allow(c); Restart(c); break;
            case "compact": Allow(c); Compact(c); break;
            case "install-snapshot": Allow(c); InstallSnapshot(c); break;
            default: throw new ScenarioUsageException($"unknown command '{c.Command}'");
        }
        return _out.ToString();
    }

    // ---------------------------------------------------------------- cluster set-up and state

    private void AddNodes(ScenarioCase c)
    {
        Allow(c, "witness", "primary", "seed", "heartbeat", "election", "retransmit", "check-quorum", "batch", "inflight");
        if (_slots.Count > 0) throw new ScenarioUsageException("add-nodes can only be used once");
        var bare = c.Args.Where(a => a.IsBare).ToList();
        int count = bare.Count == 0 ? 3 : ParseInt(bare[0].Key);
        if (count < 1 || count > 9) throw new ScenarioUsageException("between 1 and 9 nodes");
        var witnesses = Named(c, "witness") is { } w ? w.Values.Select(ParseInt).ToHashSet() : count == 3 ? [3] : new HashSet<int>();
        int primary = Named(c, "primary") is { } p ? ParseInt(p.Values[0]) : 1;
        _seed = Named(c, "seed") is { } s ? ParseInt(s.Values[0]) : 1;

        var defaults = new ConsensusConfig { SelfId = 1, Members = [new(1, true)], InitialLeaderId = 1 };
        int heartbeat = Named(c, "heartbeat") is { } hb ? ParseInt(hb.Values[0]) : defaults.HeartbeatTicks;
        int electionMin = defaults.ElectionMinTicks, electionMax = defaults.ElectionMaxTicks;
        if (Named(c, "election") is { } el)
        {
            var parts = el.Values[0].Split('-');
            electionMin = ParseInt(parts[0]);
            electionMax = parts.Length > 1 ? ParseInt(parts[1]) : electionMin;
        }
        int retransmit = Named(c, "retransmit") is { } rt ? ParseInt(rt.Values[0]) : defaults.RetransmitTicks;
        bool checkQuorum = Named(c, "check-quorum") is { } cq ? bool.Parse(cq.Values[0]) : defaults.CheckQuorum;
        int batch = Named(c, "batch") is { } b ? ParseInt(b.Values[0]) : defaults.MaxBatchEntries;
        int inflight = Named(c, "inflight") is { } inf ? ParseInt(inf.Values[0]) : defaults.MaxInflightEntries;

        var members = Enumerable.Range(1, count).Select(id => new ConsensusMember(id, !witnesses.Contains(id))).ToArray();
        foreach (var m in members)
        {
            var config = new ConsensusConfig
            {
                SelfId = m.Id, Members = members, InitialLeaderId = primary, HeartbeatTicks = heartbeat,
                ElectionMinTicks = electionMin, ElectionMaxTicks = electionMax, RetransmitTicks = retransmit,
                CheckQuorum = checkQuorum, MaxBatchEntries = batch, MaxInflightEntries = inflight,
            };
            var slot = new Slot { Id = m.Id, Config = config };
            slot.Node = new ConsensusNode(config, NewRandom(slot));
            _slots[m.Id] = slot;
        }
        Print($"members: {string.Join(", ", members.Select(m => $"{m.Id} ({(m.CanLead ? "can lead" : "witness")})"))}; " +
              $"initial primary {primary}");
        Print($"ticks: heartbeat={heartbeat} election={electionMin}-{electionMax} retransmit={retransmit} check-quorum={checkQuorum.ToString().ToLowerInvariant()}");
        foreach (var slot in _slots.Values) Print(Line(slot));
    }

    private Random NewRandom(Slot s) => new(_seed * 31 + s.Id + 1000 * s.Incarnation);

    private static string Line(Slot s) => s.Node is { } n ? $"{s.Id}: {Summary(n)}" : $"{s.Id}: down";

    private static string Summary(ConsensusNode n) =>
        $"{(n.IsRecovering ? "Recovering" : n.Role.ToString())} ballot={n.Ballot} leader={ScenarioFormat.Leader(n.LeaderId)} " +
        $"{LogRange(n)} commit={n.CommitIndex} applied={n.AppliedIndex}";

    private static string LogRange(ConsensusNode n) =>
        n.LastIndex >= n.FirstIndex ? $"log=[{n.FirstIndex},{n.LastIndex}]"
        : n.FirstIndex == 1 ? "log=empty" : $"log=empty after {n.FirstIndex - 1}";

    private static string? WhyNoCampaign(ConsensusNode n)
    {
        if (!n.Config.Self.CanLead) return "a witness never leads";
        if (n.IsRecovering) return "it is recovering";
        if (!n.CanCampaign) return "campaigning is turned off";
        if (n.LatestRole is { } r && r.Primary != n.Id && r.Backup != n.Id)
            return $"its latest ROLE entry ({ScenarioFormat.Role(r)}) leaves it out";
        return null;
    }

    private void Status(int id)
    {
        var s = _slots[id];
        Print(Line(s));
        if (s.Node is not { } n) return;
        string text = n.ToString();
        var acc = Regex.Match(text, @"acceptedThrough=(-?\d+)");
        if (n.Role == ConsensusRole.Follower && !n.IsRecovering && acc.Success) Print($"  accepted-through={acc.Groups[1].Value}");
        Print($"  latest ROLE entry: {ScenarioFormat.Role(n.LatestRole)}");
        Print(WhyNoCampaign(n) is { } why ? $"  may campaign: no ({why})" : "  may campaign: yes");
        foreach (Match m in Regex.Matches(text, @"\| (\d+): match=(-?\d+) next=(-?\d+)"))
        {
            int peer = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            Print($"  peer {peer}: match={m.Groups[2].Value} next={m.Groups[3].Value} last heard {n.TicksSinceHeard(peer)} ticks ago");
        }
    }

    private void LogOf(int id)
    {
        var n = Live(id);
        Print($"{LogRange(n)} commit={n.CommitIndex} applied={n.AppliedIndex}");
        for (long i = n.FirstIndex; i <= n.LastIndex; i++)
            Print(ScenarioFormat.Entry(n.Log[i]) + (i > n.CommitIndex ? " (not committed here)" : ""));
    }

    /// <summary>Everything any node ever applied as committed (what clients were told), and who holds it now.</summary>
    private void Committed()
    {
        if (_committed.Count == 0) { Print("nothing committed yet"); return; }
        foreach (var (index, e) in _committed)
        {
            var held = _slots.Values.Select(s =>
            {
                if (s.Node is not { } n) return $"{s.Id}=down";
                if (index < n.FirstIndex) return $"{s.Id}=compacted";
                if (!n.Log.TryGet(index, out var mine)) return $"{s.Id}=missing";
                return mine.SameValue(e) ? $"{s.Id}=same" : $"{s.Id}=DIFFERENT({ScenarioFormat.Value(mine)})";
            });
            Print($"{index} {ScenarioFormat.Value(e)}: {string.Join(" ", held)}");
        }
    }

    // ---------------------------------------------------------------- inputs to nodes

    private void Propose(ScenarioCase c)
    {
        Allow(c, "primary", "backup");
        var bare = c.Args.Where(a => a.IsBare).ToList();
        if (bare.Count < 2) throw new ScenarioUsageException("usage: propose <node> input|sync|role|noop ...");
        var n = Live(ParseInt(bare[0].Key));
        var payloads = new List<(EntryType, byte[])>();
        switch (bare[1].Key)
        {
            case "input":
                if (bare.Count < 3) throw new ScenarioUsageException("propose N input <value>...");
                foreach (var v in bare.Skip(2)) payloads.Add((EntryType.Input, ScenarioFormat.InputPayload(v.Key)));
                break;
            case "sync":
                if (bare.Count != 3) throw new ScenarioUsageException("propose N sync <epoch>");
                payloads.Add((EntryType.Sync, EntryPayloads.EncodeSync(ulong.Parse(bare[2].Key, CultureInfo.InvariantCulture))));
                break;
            case "role":
                int primary = Named(c, "primary") is { } p ? ParseInt(p.Values[0]) : n.Id;
                int backup = Named(c, "backup") is { } b && b.Values[0] != "none" ? ParseInt(b.Values[0]) : 0;
                payloads.Add((EntryType.Role, EntryPayloads.EncodeRole(n.Ballot, primary, backup)));
                break;
            case "noop":
                payloads.Add((EntryType.Noop, []));
                break;
            default: throw new ScenarioUsageException($"unknown entry type '{bare[1].Key}'");
        }
        foreach (var (type, payload) in payloads)
        {
            if (n.TryPropose(type, payload, out long index)) Print($"{n.Id}: proposed {ScenarioFormat.Entry(n.Log[index])}");
            else Print($"{n.Id}: refused: not the leader ({(n.IsRecovering ? "Recovering" : n.Role)})");
        }
    }

    /// <summary>tick N|all [count]: advances the logical clock of the node(s); effects show at the next Ready.</summary>
    private void TickCommand(ScenarioCase c)
    {
        Allow(c);
        var bare = c.Args.Where(a => a.IsBare).ToList();
        if (bare.Count is < 1 or > 2) throw new ScenarioUsageException("usage: tick <node>|all [count]");
        var ids = bare[0].Key == "all" ? LiveIds() : [ParseInt(bare[0].Key)];
        int count = bare.Count == 2 ? ParseInt(bare[1].Key) : 1;
        for (int t = 0; t < count; t++)
            foreach (int id in ids) Live(id).Tick();
    }

    /// <summary>
    /// campaign N: the core has no "campaign now" input, so this ticks node N alone until its election timer
    /// fires (it produces something to send), and says what it did: a pre-vote, or nothing and why.
    /// </summary>
    private void Campaign(int id)
    {
        var n = Live(id);
        if (n.IsLeader) { Print($"{id}: already leads ballot {n.Ballot}"); return; }
        if (n.HasReady) throw new ScenarioUsageException($"node {id} has a Ready waiting: process-ready {id} first");
        int max = 2 * n.Config.ElectionMaxTicks, ticks = 0;
        while (ticks < max && !n.HasReady) { n.Tick(); ticks++; }
        if (n.Role is ConsensusRole.PreCandidate or ConsensusRole.Candidate)
            Print($"{id}: election timeout after {ticks} ticks: {n.Role} (ballot still {n.Ballot})");
        else
            Print($"{id}: no campaign after {ticks} ticks, {Summary(n)}" + (WhyNoCampaign(n) is { } why ? $": {why}" : ""));
    }

    private void Compact(ScenarioCase c)
    {
        var bare = Bare(c, 2, "compact <node> <index>");
        var n = Live(ParseInt(bare[0]));
        try
        {
            n.Compact(ParseLong(bare[1]));
            Print($"{n.Id}: {LogRange(n)}");
        }
        catch (ArgumentOutOfRangeException e) { Print($"error: {FirstLine(e.Message)}"); }
    }

    /// <summary>install-snapshot N [index]: what syncvm does after copying the VM state (default: the index N asked for).</summary>
    private void InstallSnapshot(ScenarioCase c)
    {
        var bare = c.Args.Where(a => a.IsBare).Select(a => a.Key).ToList();
        if (bare.Count is < 1 or > 2) throw new ScenarioUsageException("usage: install-snapshot <node> [index]");
        var s = _slots[ParseInt(bare[0])];
        var n = Live(s.Id);
        long index = bare.Count == 2 ? ParseLong(bare[1])
            : s.Need?.Index ?? throw new ScenarioUsageException($"node {s.Id} asked for no snapshot; give an index");
        if (index > _maxCommitted) throw new ScenarioUsageException($"no VM state covers {index}: only {_maxCommitted} committed");
        try
        {
            n.InstallSnapshot(index);
            s.AppliedSeen = Math.Max(s.AppliedSeen, n.AppliedIndex);
            s.Need = null;
            Print(Line(s));
        }
        catch (InvalidOperationException e) { Print($"error: {e.Message}"); }
    }

    // ---------------------------------------------------------------- Ready and delivery

    private void ProcessReadyCommand(ScenarioCase c)
    {
        var ids = c.Args.Where(a => a.IsBare).Select(a => ParseInt(a.Key)).ToList();
        if (ids.Count == 0) throw new ScenarioUsageException("usage: process-ready <node>...");
        foreach (int id in ids)
        {
            var lines = ProcessReady(_slots[id]);
            string indent = ids.Count > 1 ? "  " : "";
            if (ids.Count > 1) Print($"> {id} handling Ready");
            if (lines.Count == 0) Print(indent + "(empty)");
            foreach (var (text, _) in lines) Print(indent + text);
        }
    }

    /// <summary>Takes node id's Ready: queues its messages, checks the invariants, advances. Message lines are marked.</summary>
    private List<(string Text, bool IsMessage)> ProcessReady(Slot s)
    {
        var n = s.Node ?? throw new ScenarioUsageException($"node {s.Id} is down");
        var lines = new List<(string, bool)>();
        var r = n.GetReady();
        var change = r.Change;
        var fenced = r.Fenced;
        var need = r.Snapshot;
        long? installed = r.SnapshotInstalled, recovered = r.Recovered;
        var committed = r.CommittedEntries.ToArray();
        var messages = r.Messages.Select(m => m.Detach()).ToArray();   // entries are lent until Advance
        n.Advance();

        if (change is { } ch) lines.Add(($"state: {ch.Role} ballot={ch.Ballot} leader={ScenarioFormat.Leader(ch.LeaderId)}", false));
        if (fenced is { } f) lines.Add(($"fenced: ballot {f.Ballot} ({f.Reason})", false));
        if (recovered is { } rec)
            lines.Add(($"recovered: {Summary(n)}" + (rec > 0 ? $" (entries through {rec} skipped)" : ""), false));
        if (installed is { } si) lines.Add(($"snapshot-installed: through {si} (a witness has no VM state to copy)", false));
        foreach (var e in committed) lines.Add(($"commit: {ScenarioFormat.Entry(e)}", false));
        if (need is { } nd)
        {
            s.Need = nd;
            lines.Add(($"snapshot-needed: a VM snapshot from {nd.LeaderId} covering {nd.Index}", false));
        }
        foreach (var m in messages)
        {
            _queue.Add(m);
            lines.Add((_fmt.Message(m), true));
        }

        // Invariants, in the order SimCluster checks them.
        var bad = new List<string>();
        if (installed is { } skipped) s.AppliedSeen = Math.Max(s.AppliedSeen, skipped);
        if (recovered is { } skipTo)
        {
            if (skipTo > _maxCommitted && skipTo > 0) bad.Add($"{s.Id} recovered past everything committed ({skipTo} > {_maxCommitted})");
            s.AppliedSeen = Math.Max(s.AppliedSeen, skipTo);
            for (long i = n.FirstIndex; i <= n.CommitIndex; i++)
                if (_committed.TryGetValue(i, out var c) && !n.Log[i].SameValue(c))
                    bad.Add($"{s.Id} recovered a different value at committed index {i}");
        }
        foreach (var e in committed)
        {
            if (e.Index != s.AppliedSeen + 1) bad.Add($"{s.Id} applied index {e.Index} after {s.AppliedSeen}");
            s.AppliedSeen = e.Index;
            if (_committed.TryGetValue(e.Index, out var prior))
            {
                if (!prior.SameValue(e)) bad.Add($"{s.Id} committed {ScenarioFormat.Entry(e)} where {ScenarioFormat.Entry(prior)} was committed");
            }
            else
            {
                _committed[e.Index] = e;
                _maxCommitted = Math.Max(_maxCommitted, e.Index);
            }
        }
        if (fenced is { } fe)
        {
            if (fe.Ballot.NodeId != s.Id) bad.Add($"{s.Id} fenced in ballot {fe.Ballot}, which it does not own");
            s.Fenced.Add(fe.Ballot);
        }
        if (change is { Role: ConsensusRole.Leader } lead)
        {
            if (!n.Config.Self.CanLead) bad.Add($"witness {s.Id} became leader");
            if (lead.Ballot.NodeId != s.Id) bad.Add($"{s.Id} leads ballot {lead.Ballot}, owned by another node");
            if (_ballotLeaders.TryGetValue(lead.Ballot, out int other) && other != s.Id) bad.Add($"ballot {lead.Ballot} led by {other} and {s.Id}");
            _ballotLeaders[lead.Ballot] = s.Id;
            foreach (var (i, c) in _committed)
            {
                if (i < n.FirstIndex) continue;
                if (!n.Log.TryGet(i, out var mine)) bad.Add($"new leader {s.Id} lacks committed entry {i} {ScenarioFormat.Value(c)}");
                else if (!mine.SameValue(c)) bad.Add($"new leader {s.Id} holds {ScenarioFormat.Value(mine)} at {i}, where {ScenarioFormat.Value(c)} was committed");
            }
        }
        CheckNode(s, bad);
        foreach (var b in bad) lines.Add(($"SAFETY VIOLATION: {b}", false));
        return lines;
    }

    private static void CheckNode(Slot s, List<string> bad)
    {
        if (s.Node is not { } n) return;
        if (n.IsLeader && !n.Config.Self.CanLead) bad.Add($"witness {s.Id} is leader");
        if (n.IsLeader && s.Fenced.Contains(n.Ballot)) bad.Add($"{s.Id} leads again in ballot {n.Ballot}, in which it was fenced");
        if (n.CommitIndex > n.LastIndex) bad.Add($"{s.Id} commit {n.CommitIndex} beyond its log {n.LastIndex}");
    }

    /// <summary>deliver-msgs [N...] [drop=(N...)] [from=N] [type=T]: delivers (or drops) queued messages, in queue order.</summary>
    private void DeliverCommand(ScenarioCase c)
    {
        Allow(c, "drop", "from", "type");
        var to = c.Args.Where(a => a.IsBare).Select(a => ParseInt(a.Key)).ToHashSet();
        var drop = Named(c, "drop")?.Values.Select(ParseInt).ToHashSet() ?? [];
        int? from = Named(c, "from") is { } fr ? ParseInt(fr.Values[0]) : null;
        MessageType? type = Named(c, "type") is { } ty
            ? Enum.TryParse<MessageType>(ty.Values[0], out var t) ? t : throw new ScenarioUsageException($"unknown message type '{ty.Values[0]}'")
            : null;
        if (to.Overlaps(drop)) throw new ScenarioUsageException("a node cannot both receive and drop");
        bool all = to.Count == 0 && drop.Count == 0;
        int n = Deliver(m => (all || to.Contains(m.To) || drop.Contains(m.To)) && (from is null || m.From == from) && (type is null || m.Type == type),
                        m => drop.Contains(m.To), line => Print(line));
        if (n == 0) Print("no messages");
    }

    /// <summary>Removes the selected messages from the queue and delivers each (or drops it). Returns how many.</summary>
    private int Deliver(Func<Message, bool> select, Func<Message, bool> drop, Action<string>? print)
    {
        var chosen = _queue.Where(select).ToList();
        if (chosen.Count == 0) return 0;
        _queue.RemoveAll(m => chosen.Contains(m));
        foreach (var m in chosen)
        {
            string text = _fmt.Message(m);
            if (drop(m)) { print?.Invoke($"dropped: {text}"); continue; }
            if (_cut.Contains((m.From, m.To))) { print?.Invoke($"dropped (link cut): {text}"); continue; }
            if (_slots[m.To].Node is not { } target) { print?.Invoke($"dropped ({m.To} is down): {text}"); continue; }
            print?.Invoke(text);
            target.Step(m);
            var bad = new List<string>();
            CheckNode(_slots[m.To], bad);
            foreach (var b in bad) print?.Invoke($"SAFETY VIOLATION: {b}");
        }
        return chosen.Count;
    }

    /// <summary>
    /// Handles Readies and delivers messages among the given nodes until nothing is left to do (etcd's stabilize).
    /// Quiet (used by elapse): prints only what the Readies say about state, commits, fences, snapshots and
    /// recovery, prefixed, and nothing about the messages.
    /// </summary>
    private void Stabilize(IReadOnlyList<int> ids, bool quiet, string prefix, HashSet<string>? printedOnce)
    {
        for (int round = 0; ; round++)
        {
            if (round > 10_000) throw new InvalidOperationException("stabilize: the nodes never went quiet");
            bool done = true;
            foreach (int id in ids)
            {
                if (_slots[id].Node is not { HasReady: true }) continue;
                done = false;
                var lines = ProcessReady(_slots[id]);
                if (!quiet)
                {
                    Print($"> {id} handling Ready");
                    foreach (var (text, _) in lines) Print("  " + text);
                    continue;
                }
                foreach (var (text, isMessage) in lines)
                {
                    if (isMessage) continue;
                    // A lagging node asks for its snapshot at every retransmit: once per elapse is enough.
                    if (text.StartsWith("snapshot-needed", StringComparison.Ordinal) && printedOnce is not null && !printedOnce.Add($"{id} {text}")) continue;
                    Print($"{prefix}{id} {text}");
                }
            }
            foreach (int id in ids)
            {
                if (!_queue.Any(m => m.To == id)) continue;
                done = false;
                if (!quiet) Print($"> {id} receiving messages");
                Deliver(m => m.To == id, _ => false, quiet ? line => { if (line.StartsWith("SAFETY", StringComparison.Ordinal)) Print($"{prefix}{id} {line}"); }
                                                            : line => Print("  " + line));
            }
            if (done) return;
        }
    }

    /// <summary>elapse T: T ticks of the whole cluster; after each, every live node ticks and messages flow until quiet.</summary>
    private void Elapse(ScenarioCase c)
    {
        int ticks = ParseInt(Bare(c, 1, "elapse <ticks>")[0]);
        var once = new HashSet<string>();
        for (int t = 1; t <= ticks; t++)
        {
            foreach (int id in LiveIds()) _slots[id].Node!.Tick();
            Stabilize(_slots.Keys.ToList(), quiet: true, prefix: $"+{t} ", once);
        }
    }

    // ---------------------------------------------------------------- faults

    private void Cut(ScenarioCase c)
    {
        var bare = c.Args.Where(a => a.IsBare).Select(a => a.Key).ToList();
        if (bare.Count == 1 && bare[0].Split("->") is [var a, var b])
            _cut.Add((ParseInt(a), ParseInt(b)));
        else if (bare.Count == 2)
        {
            int x = ParseInt(bare[0]), y = ParseInt(bare[1]);
            _cut.Add((x, y));
            _cut.Add((y, x));
        }
        else throw new ScenarioUsageException("usage: cut <a> <b> (both ways) or cut <a>-><b> (one way)");
        PrintCuts();
    }

    private void Isolate(int id)
    {
        foreach (int other in _slots.Keys)
            if (other != id) { _cut.Add((id, other)); _cut.Add((other, id)); }
        PrintCuts();
    }

    private void Heal(ScenarioCase c)
    {
        var bare = c.Args.Where(a => a.IsBare).Select(a => ParseInt(a.Key)).ToList();
        if (bare.Count == 0) _cut.Clear();
        else if (bare.Count == 2) { _cut.Remove((bare[0], bare[1])); _cut.Remove((bare[1], bare[0])); }
        else throw new ScenarioUsageException("usage: heal [<a> <b>]");
        PrintCuts();
    }

    private void PrintCuts()
    {
        if (_cut.Count == 0) { Print("no links cut"); return; }
        var parts = new List<string>();
        foreach (var (a, b) in _cut)
        {
            if (_cut.Contains((b, a))) { if (a < b) parts.Add($"{a}-{b}"); }
            else parts.Add($"{a}->{b}");
        }
        Print($"cut: {string.Join(" ", parts)}");
    }

    /// <summary>
    /// The process dies: its memory is exported as durable state and its unprocessed Ready is lost. Messages
    /// queued to it stay queued, as in SimNetwork: one delivered while it is down is dropped, one delivered after a
    /// restart reaches the new incarnation (a sender's queue that outlives the connection does that).
    /// </summary>
    private void Crash(int id)
    {
        var s = _slots[id];
        var n = s.Node ?? throw new ScenarioUsageException($"node {id} is already down");
        s.Saved = n.ExportDurableState();
        s.Node = null;
        s.Need = null;
        Print($"{id}: down");
    }

    /// <summary>restart N [empty]: crashes N if it is up, then starts it from its durable state, or without memory.</summary>
    private void Restart(ScenarioCase c)
    {
        var bare = c.Args.Where(a => a.IsBare).Select(a => a.Key).ToList();
        if (bare.Count is < 1 or > 2 || (bare.Count == 2 && bare[1] != "empty")) throw new ScenarioUsageException("usage: restart <node> [empty]");
        var s = _slots[ParseInt(bare[0])];
        bool empty = bare.Count == 2;
        if (s.Node is not null) Crash(s.Id);
        s.Incarnation++;
        var state = empty ? DurableState.Empty : s.Saved;
        s.Node = new ConsensusNode(s.Config, NewRandom(s), state);
        s.AppliedSeen = s.Node.AppliedIndex;
        Print($"{s.Id}: restarted {(empty ? "without memory" : "with its durable state")}: {Summary(s.Node)}");
    }

    // ---------------------------------------------------------------- argument helpers

    private void Print(string line) => _out.Append(line).Append('\n');

    private ConsensusNode Live(int id) =>
        !_slots.TryGetValue(id, out var s) ? throw new ScenarioUsageException($"no node {id}")
        : s.Node ?? throw new ScenarioUsageException($"node {id} is down");

    private List<int> LiveIds() => _slots.Values.Where(s => s.Node is not null).Select(s => s.Id).ToList();

    private List<int> NodesOrAll(ScenarioCase c)
    {
        var ids = c.Args.Where(a => a.IsBare && a.Key != "quiet").Select(a => ParseInt(a.Key)).ToList();
        foreach (int id in ids) if (!_slots.ContainsKey(id)) throw new ScenarioUsageException($"no node {id}");
        return ids.Count > 0 ? ids : _slots.Keys.ToList();
    }

    private int Single(ScenarioCase c)
    {
        int id = ParseInt(Bare(c, 1, $"{c.Command} <node>")[0]);
        if (!_slots.ContainsKey(id)) throw new ScenarioUsageException($"no node {id}");
        return id;
    }

    private static List<string> Bare(ScenarioCase c, int count, string usage)
    {
        var bare = c.Args.Where(a => a.IsBare).Select(a => a.Key).ToList();
        return bare.Count == count ? bare : throw new ScenarioUsageException($"usage: {usage}");
    }

    private static ScenarioArg? Named(ScenarioCase c, string key) => c.Args.FirstOrDefault(a => !a.IsBare && a.Key == key);

    /// <summary>Refuses key=value arguments the command does not know (typos would otherwise pass unnoticed).</summary>
    private static void Allow(ScenarioCase c, params string[] keys)
    {
        foreach (var a in c.Args)
            if (!a.IsBare && !keys.Contains(a.Key)) throw new ScenarioUsageException($"unknown argument '{a.Key}'");
    }

    private static int ParseInt(string s) =>
        int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : throw new ScenarioUsageException($"'{s}' is not a number");

    private static long ParseLong(string s) =>
        long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v) ? v : throw new ScenarioUsageException($"'{s}' is not a number");

    private static string FirstLine(string s) => s.Split('\n')[0].Split(" (Parameter")[0];
}
