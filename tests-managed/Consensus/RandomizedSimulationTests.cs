using System.Buffers.Binary;
using System.Diagnostics;
using Plover.Consensus;
using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Consensus;

/// <summary>
/// Thousands of seeded runs of three nodes under message loss, duplication, reordering, delay, partitions (both
/// ways and one way), a lagging node, crashes, restarts with and without memory,
/// with periodic log compaction. Safety invariants are checked after every step by
/// <see cref="SimCluster"/>; liveness is checked once the network heals and every node is back.
/// PLOVER_SIM_SEEDS=n runs n seeds per test instead of the default.
/// </summary>
public sealed class RandomizedSimulationTests(ITestOutputHelper output)
{
    private const int DefaultSeedsPerShard = 1000;
    private const int ChaosTicks = 500;
    /// <summary>Ticks allowed, after the network heals and all nodes are up, for a proposal to commit everywhere.</summary>
    private const int LivenessBoundTicks = 400;
    private const int MaxUncommitted = 64;

    private static int SeedsPerShard =>
        int.TryParse(Environment.GetEnvironmentVariable("PLOVER_SIM_SEEDS"), out int n) && n > 0 ? (n + 1) / 2 : DefaultSeedsPerShard;

    // Two shards so xunit can run them on both cores.
    [Fact] public void Shard0() => RunShard(0);
    [Fact] public void Shard1() => RunShard(1);

    private void RunShard(int shard)
    {
        var sw = Stopwatch.StartNew();
        int seeds = SeedsPerShard;
        var stats = new SimStats();
        for (int i = 0; i < seeds; i++)
        {
            int seed = 1 + shard * 1_000_003 + i;
            RunSeed(seed, stats);
        }
        output.WriteLine($"shard {shard}: {seeds} seeds in {sw.Elapsed.TotalSeconds:F1}s; {stats}");
        Assert.True(stats.Elections > 0, "no run exercised a failover");
        Assert.True(stats.Committed > seeds, "runs committed almost nothing");
        Assert.True(stats.EmptyRestarts > seeds / 20, "few runs restarted a node without memory");
    }

    /// <summary>Debugging aid: sees each run's cluster before it starts (to trace messages of one seed).</summary>
    internal static Action<SimCluster>? DebugHook;

    internal static void RunSeed(int seed, SimStats stats)
    {
        var r = new Random(seed ^ 0x5EED);
        // Vary the tunables too: tiny batches and windows exercise pipelining and go-back resends.
        int batch = r.Next(4) switch { 0 => 1, 1 => 3, 2 => 16, _ => 512 };
        int window = Math.Max(8, batch * r.Next(1, 5));
        bool checkQuorum = r.NextDouble() < 0.8;
        int retransmit = r.Next(2, 7);
        int heartbeat = r.Next(4) == 0 ? 3 : 1;
        var sim = new SimCluster(seed, id => new ConsensusConfig
        {
            SelfId = id, Members = SimCluster.DefaultConfig(id).Members, InitialLeaderId = SimCluster.Primary,
            HeartbeatTicks = heartbeat, MaxBatchEntries = batch, MaxInflightEntries = window,
            CheckQuorum = checkQuorum, RetransmitTicks = retransmit,
        });
        DebugHook?.Invoke(sim);
        var net = sim.Network;
        net.DropRate = r.NextDouble() * 0.2;
        net.DuplicateRate = r.NextDouble() * 0.1;
        net.MaxDelay = r.Next(1, 6);
        int counter = 0;
        byte[] payload = new byte[80];

        long Propose(ConsensusNode n)
        {
            int len = 8 + r.Next(0, 72);
            BinaryPrimitives.WriteInt32LittleEndian(payload, seed);
            BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(4), ++counter);
            r.NextBytes(payload.AsSpan(8, len - 8));
            return sim.Propose(n.Id, EntryType.Input, payload.AsSpan(0, len));
        }

        for (int t = 0; t < ChaosTicks; t++)
        {
            if (r.NextDouble() < 0.5)
                foreach (int id in SimCluster.Ids)
                    // Flow control, as the node layer does: stop proposing while much is uncommitted.
                    if (sim.Node(id) is { IsLeader: true } leader && leader.LastIndex - leader.CommitIndex < MaxUncommitted)
                        for (int k = r.Next(1, 4); k > 0; k--) Propose(leader);

            double roll = r.NextDouble();
            int victim = SimCluster.Ids[r.Next(3)];
            int downCount = SimCluster.Ids.Count(id => !sim.IsUp(id));
            if (roll < 0.008 && sim.IsUp(victim) && (downCount == 0 || r.NextDouble() < 0.2)) sim.Crash(victim);
            // A restart without memory counts as that node's failure: at most one node at a time may have lost
            // its memory and not yet rebuilt it (the model Paxos tolerates), and only while the others are up.
            else if (roll < 0.025 && !sim.IsUp(victim))
            {
                if (downCount == 1 && !SimCluster.Ids.Any(id => sim.Node(id) is { IsRecovering: true }) && r.NextDouble() < 0.4)
                {
                    sim.RestartEmpty(victim);
                    stats.EmptyRestarts++;
                }
                else sim.Restart(victim);
            }
            else if (roll < 0.032)
            {
                int other = SimCluster.Ids[r.Next(3)];
                if (other != victim)
                {
                    if (r.NextDouble() < 0.5) net.Block(victim, other); else net.CutLink(victim, other);
                }
                else net.Isolate(victim, SimCluster.Ids);
            }
            else if (roll < 0.034) net.SetLag(victim, r.Next(0, 3) * r.Next(5, 40));   // a lagging node
            else if (roll < 0.040) net.HealAll();
            else if (roll < 0.050) CompactAfterSync(sim, r);
            sim.Step();
        }

        // Heal: every node up, no partitions, light loss only. Liveness: a new proposal commits (a majority has
        // it) within LivenessBoundTicks; then every node applies it, within a bound that grows with how far
        // behind the slowest node was (catching up a node that missed hundreds of entries takes its time
        // when batches are tiny and the network reorders).
        net.HealAll();
        net.DropRate = Math.Min(net.DropRate, 0.05);
        foreach (int id in SimCluster.Ids) if (!sim.IsUp(id)) sim.Restart(id);
        long healedAt = sim.Now;
        long marker = 0;
        byte[] markerValue = [];
        int markerLeader = 0;
        long markerAt = 0;
        bool MarkerCommitted() =>
            marker != 0 && sim.Committed.TryGetValue(marker, out var e) && e.Payload.Span.SequenceEqual(markerValue);
        bool committed = sim.RunUntil(() =>
        {
            if (MarkerCommitted()) return true;
            bool stale = marker == 0 || sim.Node(markerLeader) is not { IsLeader: true } || sim.Now - markerAt > 100;
            if (stale && sim.Leader() is { } l)
            {
                long idx = Propose(l);
                if (idx != 0) { marker = idx; markerValue = l.Log[idx].Payload.ToArray(); markerLeader = l.Id; markerAt = sim.Now; }
            }
            return false;
        }, LivenessBoundTicks);
        if (!committed)
            sim.Fail($"no proposal committed within {LivenessBoundTicks} ticks after healing " +
                     $"(leader {sim.Leader()?.Id}, applied {string.Join(",", SimCluster.Ids.Select(sim.AppliedBy))}, marker {marker})");
        long commitTicks = sim.Now - healedAt;

        long behind = marker - SimCluster.Ids.Min(sim.AppliedBy);
        int convergeBound = LivenessBoundTicks + 10 * (int)behind;
        long convergeFrom = sim.Now;
        if (!sim.RunUntil(() => SimCluster.Ids.All(id => sim.AppliedBy(id) >= marker), convergeBound))
            sim.Fail($"nodes did not all apply index {marker} within {convergeBound} ticks of its commit " +
                     $"(applied {string.Join(",", SimCluster.Ids.Select(sim.AppliedBy))})");
        sim.CheckLogsAgree();

        stats.Runs++;
        stats.Committed += sim.MaxCommitted;
        stats.Elections += sim.Fences.Count;
        stats.MaxCommitTicks = Math.Max(stats.MaxCommitTicks, commitTicks);
        stats.MaxConvergeTicks = Math.Max(stats.MaxConvergeTicks, sim.Now - convergeFrom);
        stats.Messages += net.Sent;
        stats.Snapshots += sim.SnapshotRequests.Count;
    }

    /// <summary>
    /// What a completed syncvm allows: both VM nodes have applied index S, so both may drop the log through S
    /// (the witness follows the leader's compaction point on its own).
    /// </summary>
    private static void CompactAfterSync(SimCluster sim, Random r)
    {
        var vmNodes = new[] { SimCluster.Primary, SimCluster.Backup }.Where(sim.IsUp).ToArray();
        // With one VM node down, the other one's state alone is the snapshot (the returning node needs a full copy).
        if (vmNodes.Length == 0 || (vmNodes.Length == 1 && r.NextDouble() < 0.7)) return;
        long s = vmNodes.Min(id => sim.Live(id).AppliedIndex) - r.Next(0, 20);
        foreach (int id in vmNodes)
            if (s >= sim.Live(id).FirstIndex) sim.Compact(id, s);
        // The primary protected again by the other VM node (a new leader's own ROLE names no backup): both may lead.
        if (vmNodes.Length == 2 && sim.Leader() is { } leader && vmNodes.Contains(leader.Id))
            sim.Propose(leader.Id, EntryType.Role, EntryPayloads.EncodeRole(leader.Ballot, leader.Id, vmNodes.Single(id => id != leader.Id)));
    }
}

internal sealed class SimStats
{
    public int Runs;
    public long Committed, Elections, Messages, Snapshots, EmptyRestarts, MaxCommitTicks, MaxConvergeTicks;
    public override string ToString() =>
        $"{Runs} runs, {Committed} entries committed, {Elections} fences, {Snapshots} snapshot requests, {EmptyRestarts} restarts without memory, " +
        $"{Messages} messages; worst ticks from healing to a new commit {MaxCommitTicks}, " +
        $"then to every node applying it {MaxConvergeTicks}";
}
