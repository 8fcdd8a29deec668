using System.Diagnostics;
using Plover.Idle;
using Plover.Node;
using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Replica.Core;

/// <summary>
/// Seeded runs of two <see cref="ReplicaCore"/>s over <see cref="ReplicaSim"/>'s synthetic consensus, engines and
/// VMs under a random schedule of inputs, commits, partial deliveries, idle triggers, early resumes, completed and
/// aborted syncs, link cuts, partitions (backup loss), elections (promotion, deposed primaries rejoining), lost
/// quorums (standby) and crashes with restarts (joins). The sim checks its safety invariants after every step
/// (no release outside an acked sync unless a committed ROLE says the primary runs alone, one releasing node per
/// term, inputs injected in log order once, never into a stopped VM or by a joining backup, every sync with the VM
/// stopped, equal inputs at every cut). Once the faults stop, the cluster must converge: one serving primary,
/// protected by a synced backup with the same inputs. PLOVER_REPLICA_SIM_SEEDS=n runs n seeds instead of 500.
/// </summary>
public sealed class ReplicaCoreSimulationTests(ITestOutputHelper output)
{
    private const int DefaultSeeds = 500;
    private const int ChaosSteps = 300;
    private const int HealRounds = 300;

    private static int Seeds =>
        int.TryParse(Environment.GetEnvironmentVariable("PLOVER_REPLICA_SIM_SEEDS"), out int n) && n > 0 ? n : DefaultSeeds;

    private sealed class Stats
    {
        public int Promotions, Demotions, Joins, Completed, Aborted, EarlyResumes, RunAlone, Unrecoverable;
        public override string ToString() =>
            $"promotions {Promotions}, demotions {Demotions}, joins {Joins}, syncs {Completed} completed / {Aborted} aborted, " +
            $"early resumes {EarlyResumes}, runs alone {RunAlone}, runs left without a node able to lead {Unrecoverable}";
    }

    [Fact]
    public void RandomFaultSchedules_KeepTheInvariants_AndConverge()
    {
        var sw = Stopwatch.StartNew();
        var stats = new Stats();
        if (int.TryParse(Environment.GetEnvironmentVariable("PLOVER_REPLICA_SIM_SEED"), out int only))
        {
            // Debugging one seed: its whole trace goes to a file.
            string path = Path.Combine(Path.GetTempPath(), $"replica-sim-{only}.txt");
            try { RunSeed(only, stats, path); }
            finally { output.WriteLine($"trace of seed {only} in {path}"); }
            return;
        }
        for (int seed = 1; seed <= Seeds; seed++) RunSeed(seed, stats);
        output.WriteLine($"{Seeds} seeds in {sw.Elapsed.TotalSeconds:F1}s: {stats}");
        Assert.True(stats.Promotions > Seeds / 4, $"few runs promoted a backup: {stats}");
        Assert.True(stats.Joins > Seeds / 4, $"few runs joined a backup: {stats}");
        Assert.True(stats.EarlyResumes > Seeds / 4, $"few syncs resumed early: {stats}");
        Assert.True(stats.RunAlone > Seeds / 20, $"few runs lost their backup: {stats}");
    }

    /// <summary>
    /// The same schedules in adaptive mode with a tiny window and probe interval and syncs whose cost flips at random,
    /// so the mode switches back and forth under every fault: the two replicas must agree on the mode at every cut
    /// (the sim checks each completed sync), a checkpoint must include the backup's own dirt whenever its VM ran
    /// since its last completed sync, a checkpoint backup injects nothing, and the cluster converges as above.
    /// </summary>
    [Fact]
    public void RandomFaultSchedules_InAdaptiveMode_KeepTheInvariants_AndConverge()
    {
        var stats = new Stats();
        int seeds = Math.Max(Seeds / 2, 1);
        long switches = 0, toCheckpoint = 0, joinsIntoCheckpoint = 0, ownDirt = 0;
        for (int seed = 1; seed <= seeds; seed++)
        {
            var sim = RunSeed(seed, stats, adaptive: true);
            foreach (var n in sim.Nodes) { switches += n.Core.ModeSwitches.Total; toCheckpoint += n.Core.ModeSwitches.ToCheckpoint; }
            string trace = sim.Trace.ToString();
            joinsIntoCheckpoint += CountOf(trace, "mode checkpoint adopted from the primary at the join");
            ownDirt += CountOf(trace, " own-dirt");
        }
        output.WriteLine($"{seeds} adaptive seeds: {stats}; mode switches applied {switches} ({toCheckpoint} to checkpointing), " +
                         $"joins into a checkpointing cluster {joinsIntoCheckpoint}, checkpoints with the backup's own dirt {ownDirt}");
        Assert.True(toCheckpoint > seeds / 2 && switches - toCheckpoint > seeds / 4, $"few mode switches: {switches} ({toCheckpoint} to checkpointing)");
        Assert.True(stats.Promotions > seeds / 4, $"few runs promoted a backup: {stats}");
    }

    /// <summary>One seed, with its trace on failure (for debugging a seed the test reports).</summary>
    private static ReplicaSim RunSeed(int seed, Stats stats, string? tracePath = null, bool adaptive = false)
    {
        var r = new Random(seed);
        var sim = adaptive
            ? new ReplicaSim(idleMonitor: true, backupLossMs: 200 * r.Next(1, 4), retryAfterAbortMs: 100 * r.Next(1, 4),
                             adaptive: new Plover.Sync.AdaptiveOptions { Window = 2, ProbeEvery = 2, MaxProbeEvery = 4 })
            : new ReplicaSim(idleMonitor: true, backupLossMs: 200 * r.Next(1, 4), retryAfterAbortMs: 100 * r.Next(1, 4));
        try
        {
            for (int step = 0; step < ChaosSteps; step++)
            {
                if (adaptive && r.Next(10) == 0) sim.SyncWireBytes = r.Next(2) == 0 ? 10_000 : 10_000_000;   // divergence comes and goes
                Chaos(sim, r);
            }
            bool recoverable = Heal(sim, r);
            Assert.Empty(sim.Violations);
            if (!recoverable) stats.Unrecoverable++;
            else CheckConverged(sim);
        }
        catch (Exception e) when (e is not SeedFailure)
        {
            if (tracePath is not null) File.WriteAllText(tracePath, sim.Trace.ToString());
            string trace = sim.Trace.ToString();
            if (trace.Length > 20_000) trace = "...\n" + trace[^20_000..];
            throw new SeedFailure($"seed {seed}: {e.Message}\n{sim.State()}\n--- trace (end) ---\n{trace}", e);
        }
        foreach (var n in sim.Nodes)
        {
            var (p, d, j) = n.Core.RoleChanges;
            stats.Promotions += (int)p;
            stats.Demotions += (int)d;
            stats.Joins += (int)j;
            if (n.Events.Any(e => e.StartsWith("running unprotected"))) stats.RunAlone++;
        }
        string text = sim.Trace.ToString();
        stats.Completed += CountOf(text, " completes");
        stats.Aborted += CountOf(text, " aborts at node ");
        stats.EarlyResumes += CountOf(text, "<- resumed-early");
        return sim;
    }

    private sealed class SeedFailure(string message, Exception inner) : Exception(message, inner);

    private static int CountOf(string text, string what)
    {
        int count = 0;
        for (int at = text.IndexOf(what, StringComparison.Ordinal); at >= 0; at = text.IndexOf(what, at + what.Length, StringComparison.Ordinal)) count++;
        return count;
    }

    private static void Chaos(ReplicaSim sim, Random r)
    {
        var node = sim.Nodes[r.Next(2)];
        int roll = r.Next(100);
        if (roll < 20) { for (int i = r.Next(1, 4); i > 0; i--) sim.Input(); }
        else if (roll < 32) sim.Commit();
        else if (roll < 50) sim.Deliver(node, r.Next(1, 6));
        else if (roll < 60) sim.Tick(20 * r.Next(1, 10));
        else if (roll < 68) sim.Idle(node, r.Next(4) == 0 ? SyncTrigger.MaxEpoch : SyncTrigger.Idle);
        else if (roll < 72) { if (node.Alive) { sim.Step(node, ReplicaEvent.SyncRequested()); sim.Pump(); } }
        else if (roll < 77) { if (sim.Leader != 0) sim.ResumeEarly(sim[sim.Leader]); }
        else if (roll < 86) { if (!sim.CompleteSync()) sim.Supersede(); }
        else if (roll < 88) sim.AbortSync(node);
        else if (roll < 89) { sim.CutLink(); sim.Pump(); }
        else if (roll < 92) sim.Reconnect();
        else if (roll < 94) sim.Partition(!sim.Partitioned);
        else if (roll < 96) { if (sim.CannotLead(node.Id) is null) sim.Elect(node.Id); }
        else if (roll < 97) sim.LoseQuorum();
        else if (roll < 98) { if (CanCrash(sim, node)) sim.Crash(node); }
        else if (!node.Alive) sim.Restart(node);
    }

    /// <summary>Crash a node only if the other one could lead afterwards (else the run just ends with no VM state).</summary>
    private static bool CanCrash(ReplicaSim sim, ReplicaSim.Node n)
    {
        var other = sim.Peer(n)!;
        if (!n.Alive || !other.Alive || other.Core.IsJoining || !other.CanCampaign) return false;
        return sim.LatestRole() is not { } role || role.Primary == other.Id || role.Backup == other.Id;
    }

    /// <summary>No more faults: nodes back, link up, a leader; then the normal work goes on. False if no node may lead.</summary>
    private static bool Heal(ReplicaSim sim, Random r)
    {
        if (sim.Partitioned) sim.Partition(false);
        foreach (var n in sim.Nodes.Where(n => !n.Alive)) sim.Restart(n);
        for (int round = 0; round < HealRounds; round++)
        {
            if (sim.Leader == 0)
            {
                var candidate = sim.Nodes.FirstOrDefault(n => sim.CannotLead(n.Id) is null);
                if (candidate is null) return false;
                sim.Elect(candidate.Id);
            }
            sim.Reconnect();
            if (round % 3 == 0) sim.Input();
            sim.Commit();
            foreach (var n in sim.Nodes) sim.Deliver(n);
            sim.Tick(20);
            foreach (var n in sim.Nodes) sim.Idle(n, SyncTrigger.Idle);
            if (r.Next(2) == 0) sim.ResumeEarly(sim[sim.Leader]);
            if (!sim.CompleteSync() && !sim.Supersede() && round % 10 == 9)
                foreach (var n in sim.Nodes) sim.AbortSync(n);   // a sync with no partner times out
        }
        // A last sync, with nothing after it, so that both guests took the same inputs.
        var primary = sim[sim.Leader];
        sim.Reconnect();
        sim.Tick(20);
        sim.Step(primary, ReplicaEvent.SyncRequested());
        sim.Pump();
        sim.Commit();
        foreach (var n in sim.Nodes) sim.Deliver(n);
        while (sim.CompleteSync() || sim.Supersede()) { }
        return true;
    }

    private static void CheckConverged(ReplicaSim sim)
    {
        var primary = sim[sim.Leader];
        var backup = sim.Peer(primary)!;
        Assert.True(primary.Core.Role == ReplicaRole.Primary && !primary.Core.IsFenced, $"the leader {primary.Id} does not serve");
        Assert.True(backup.Core.Role == ReplicaRole.Backup && !backup.Core.IsJoining, $"node {backup.Id} is no synced backup");
        Assert.False(primary.Core.RunsAlone, "the primary still runs alone");
        Assert.Equal(ReplicaSim.GuardState.Holding, primary.Guard);
        Assert.Equal(primary.Inputs, backup.Inputs);
        Assert.Equal(primary.Core.CheckpointMode, backup.Core.CheckpointMode);
        Assert.True(primary.VmRunning && (backup.VmRunning || backup.Core.CheckpointMode), "a VM stays stopped");
        if (backup.Core.CheckpointMode) Assert.False(backup.VmRunning, "a checkpoint backup's VM runs");
        Assert.True(primary.IdleArmed || primary.Jobs.Count > 0, "the idle monitor is never re-armed");
    }
}
