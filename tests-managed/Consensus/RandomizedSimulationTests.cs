using System.Buffers.Binary;
using System.Diagnostics;
using Plover.Consensus;
using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Consensus;

/// <summary>
/// Thousands of seeded runs of three nodes under message loss, duplication, reordering, delay, partitions,
/// crashes and restarts, with periodic log compaction. Safety invariants are checked after every step by
/// <see cref="SimCluster"/>; liveness is checked once the network heals and every node is back.
/// PLOVER_SIM_SEEDS=n runs n seeds per test instead of the default.
/// </summary>
public sealed class RandomizedSimulationTests(ITestOutputHelper output)
{
    private const int DefaultSeedsPerShard = 1500;
    private const int ChaosTicks = 500;
    /// <summary>Ticks allowed, after the network heals and all nodes are up, for a proposal to commit everywhere.</summary>
    private const int LivenessBoundTicks = 400;

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
    }

    internal static void RunSeed(int seed, SimStats stats)
    {
        var r = new Random(seed ^ 0x5EED);
        var sim = new SimCluster(seed);
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
                    if (sim.Node(id) is { IsLeader: true } leader)
                        for (int k = r.Next(1, 4); k > 0; k--) Propose(leader);

            double roll = r.NextDouble();
            int victim = SimCluster.Ids[r.Next(3)];
            int downCount = SimCluster.Ids.Count(id => !sim.IsUp(id));
            if (roll < 0.008 && sim.IsUp(victim) && (downCount == 0 || r.NextDouble() < 0.2)) sim.Crash(victim);
            else if (roll < 0.025 && !sim.IsUp(victim)) sim.Restart(victim);
            else if (roll < 0.032)
            {
                int other = SimCluster.Ids[r.Next(3)];
                if (other != victim)
                {
                    if (r.NextDouble() < 0.5) net.Block(victim, other); else net.CutLink(victim, other);
                }
                else net.Isolate(victim, SimCluster.Ids);
            }
            else if (roll < 0.040) net.HealAll();
            else if (roll < 0.050) CompactAfterSync(sim, r);
            sim.Step();
        }

        // Heal: every node up, no partitions, light loss only. A proposal must then commit on every node.
        net.HealAll();
        net.DropRate = Math.Min(net.DropRate, 0.05);
        foreach (int id in SimCluster.Ids) if (!sim.IsUp(id)) sim.Restart(id);
        long healedAt = sim.Now;
        long marker = 0;
        int markerLeader = 0;
        long markerAt = 0;
        bool done = sim.RunUntil(() =>
        {
            if (marker != 0 && SimCluster.Ids.All(id => sim.AppliedBy(id) >= marker) && sim.Committed.ContainsKey(marker)) return true;
            bool stale = marker == 0 || sim.Node(markerLeader) is not { IsLeader: true } || sim.Now - markerAt > 200;
            if (stale && sim.Leader() is { } l)
            {
                long idx = Propose(l);
                if (idx != 0) { marker = idx; markerLeader = l.Id; markerAt = sim.Now; }
            }
            return false;
        }, LivenessBoundTicks);
        if (!done)
            sim.Fail($"no proposal committed on all nodes within {LivenessBoundTicks} ticks after healing " +
                     $"(leader {sim.Leader()?.Id}, applied {string.Join(",", SimCluster.Ids.Select(sim.AppliedBy))}, marker {marker})");
        sim.CheckLogsAgree();

        stats.Runs++;
        stats.Committed += sim.MaxCommitted;
        stats.Elections += sim.Fences.Count;
        stats.MaxHealTicks = Math.Max(stats.MaxHealTicks, sim.Now - healedAt);
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
    }
}

internal sealed class SimStats
{
    public int Runs;
    public long Committed, Elections, Messages, Snapshots, MaxHealTicks;
    public override string ToString() =>
        $"{Runs} runs, {Committed} entries committed, {Elections} fences, {Snapshots} snapshot requests, " +
        $"{Messages} messages, worst heal-to-commit {MaxHealTicks} ticks";
}
