using System.Text;
using Plover.Consensus;
using Xunit;

namespace Plover.Tests.Consensus;

/// <summary>Hand-written failure scenarios on a lossless network with 1-tick delay (defaults: heartbeat 1, election 10-30).</summary>
public sealed class FailoverScenarioTests
{
    private const int P = SimCluster.Primary, B = SimCluster.Backup, W = SimCluster.Witness;

    private static SimCluster Start(int seed = 42, Func<int, ConsensusConfig>? config = null)
    {
        var sim = new SimCluster(seed, config);
        sim.RunTicks(3);
        Assert.True(sim.Live(P).IsLeader);
        Assert.Equal(new Ballot(1, P), sim.Live(P).Ballot);
        return sim;
    }

    private static byte[] Bytes(string s) => Encoding.UTF8.GetBytes(s);

    private static long ProposeAndCommit(SimCluster sim, string value, params int[] on)
    {
        var leader = sim.Leader()!;
        long idx = sim.Propose(leader.Id, EntryType.Input, Bytes(value));
        Assert.NotEqual(0, idx);
        Assert.True(sim.RunUntil(() => on.All(id => sim.AppliedBy(id) >= idx), 50), $"'{value}' did not commit on {string.Join(",", on)}");
        return idx;
    }

    [Fact]
    public void PrimaryCrash_BackupLeadsWithEveryCommittedEntry_IncludingOneOnlyTheWitnessHad()
    {
        var sim = Start();
        for (int i = 0; i < 5; i++) ProposeAndCommit(sim, $"before-{i}", P, B, W);

        // The backup hears nothing: X commits on the primary and the witness only.
        sim.Network.Isolate(B, SimCluster.Ids);
        long x = ProposeAndCommit(sim, "only-on-primary-and-witness", P, W);
        Assert.True(sim.Live(P).CommitIndex >= x);
        Assert.False(sim.Live(B).Log.Contains(x));

        sim.Crash(P);
        sim.Network.HealAll();
        Assert.True(sim.RunUntil(() => sim.Live(B).IsLeader, 200), "backup did not take over");

        var backup = sim.Live(B);
        Assert.True(backup.Ballot > new Ballot(1, P));
        Assert.Equal(B, backup.Ballot.NodeId);
        Assert.True(backup.Log[x].SameValue(sim.Committed[x]), "the witness-only entry was not recovered");
        // The new leader's first own entry is its ROLE entry, right after everything it recovered.
        var role = backup.Log[x + 1];
        Assert.Equal(EntryType.Role, role.Type);
        var (ballot, primary, backupOfNewPrimary) = EntryPayloads.DecodeRole(role.Payload.Span);
        Assert.Equal(backup.Ballot, ballot);
        Assert.Equal(B, primary);
        Assert.Equal(0, backupOfNewPrimary);   // a new leader names no backup: it runs alone until one is synced

        Assert.True(sim.RunUntil(() => sim.AppliedBy(B) >= x + 1 && sim.AppliedBy(W) >= x + 1, 50));
        long y = ProposeAndCommit(sim, "after-failover", B, W);
        Assert.Equal(x + 2, y);
        sim.CheckLogsAgree();
    }

    [Fact]
    public void IsolatedPrimary_IsFencedByLostQuorum_ThenFollowsTheNewLeader()
    {
        var sim = Start();
        ProposeAndCommit(sim, "a", P, B, W);
        var primary = sim.Live(P);
        long commitBefore = primary.CommitIndex;

        sim.Network.Isolate(P, SimCluster.Ids);
        long orphan = sim.Propose(P, EntryType.Input, Bytes("never-committed"));
        Assert.NotEqual(0, orphan);
        Assert.True(sim.RunUntil(() => sim.Live(B).IsLeader, 300), "backup did not take over");
        Assert.True(sim.RunUntil(() => !primary.IsLeader, 100), "isolated primary kept leading");
        Assert.Equal(commitBefore, primary.CommitIndex);
        var fence = Assert.Single(sim.Fences, f => f.Node == P).Fence;
        Assert.Equal(new Ballot(1, P), fence.Ballot);
        Assert.False(primary.TryPropose(EntryType.Input, Bytes("late"), out _));

        long z = ProposeAndCommit(sim, "new-epoch", B, W);
        sim.Network.HealAll();
        Assert.True(sim.RunUntil(() => sim.AppliedBy(P) >= z, 100), "old primary did not catch up");
        Assert.Equal(B, primary.LeaderId);
        Assert.False(sim.Committed[orphan].SameValue(new LogEntry(orphan, default, EntryType.Input, Bytes("never-committed"))));
        Assert.DoesNotContain(sim.Fences, f => f.Node == P && f.Fence.Ballot != new Ballot(1, P));
        sim.CheckLogsAgree();
    }

    [Fact]
    public void PartitionedPrimaryWithoutQuorumCheck_IsFencedByTheHigherBallotOnHealing()
    {
        var sim = Start(config: id => SimCluster.DefaultConfig(id) is var c ? new ConsensusConfig
        {
            SelfId = c.SelfId, Members = c.Members, InitialLeaderId = c.InitialLeaderId, CheckQuorum = false,
        } : null!);
        ProposeAndCommit(sim, "a", P, B, W);
        var primary = sim.Live(P);
        long commitBefore = primary.CommitIndex;

        sim.Network.Isolate(P, SimCluster.Ids);
        for (int i = 0; i < 10; i++) sim.Propose(P, EntryType.Input, Bytes($"orphan-{i}"));
        Assert.True(sim.RunUntil(() => sim.Live(B).IsLeader, 300));
        long z = ProposeAndCommit(sim, "new-epoch", B, W);
        sim.RunTicks(200);
        Assert.True(primary.IsLeader, "without quorum checks the isolated primary still believes it leads");
        Assert.Equal(commitBefore, primary.CommitIndex);   // but it commits nothing

        sim.Network.HealAll();
        Assert.True(sim.RunUntil(() => !primary.IsLeader, 20));
        var fence = Assert.Single(sim.Fences, f => f.Node == P).Fence;
        Assert.Equal(FenceReason.HigherBallot, fence.Reason);
        Assert.True(sim.RunUntil(() => sim.AppliedBy(P) >= z, 100));
        sim.CheckLogsAgree();
    }

    [Fact]
    public void BackupCrash_PrimaryAndWitnessGoOn()
    {
        var sim = Start();
        sim.Crash(B);
        long last = 0;
        for (int i = 0; i < 100; i++) last = sim.Propose(P, EntryType.Input, Bytes($"v{i}"));
        Assert.True(sim.RunUntil(() => sim.AppliedBy(P) >= last && sim.AppliedBy(W) >= last, 20));
        Assert.Equal(new Ballot(1, P), sim.Live(P).Ballot);
        Assert.Empty(sim.Fences);

        sim.Restart(B);
        Assert.True(sim.RunUntil(() => sim.AppliedBy(B) >= last, 50), "restarted backup did not catch up");
        Assert.True(sim.Live(P).IsLeader);
        sim.CheckLogsAgree();
    }

    [Fact]
    public void WitnessCrash_PrimaryAndBackupGoOn()
    {
        var sim = Start();
        sim.Crash(W);
        long last = 0;
        for (int i = 0; i < 100; i++) last = sim.Propose(P, EntryType.Input, Bytes($"v{i}"));
        Assert.True(sim.RunUntil(() => sim.AppliedBy(P) >= last && sim.AppliedBy(B) >= last, 20));
        Assert.Equal(new Ballot(1, P), sim.Live(P).Ballot);

        sim.Restart(W);
        Assert.True(sim.RunUntil(() => sim.AppliedBy(W) >= last, 50));
        sim.CheckLogsAgree();
    }

    [Fact]
    public void PrimaryAndBackupBothDown_WitnessNeverCampaigns()
    {
        var sim = Start();
        ProposeAndCommit(sim, "a", P, B, W);
        int campaignMessages = 0;
        sim.Network.OnSend = m => { if (m.From == W && m.Type is MessageType.PreVote or MessageType.Prepare) campaignMessages++; };
        sim.Crash(P);
        sim.Crash(B);
        sim.RunTicks(1000);
        Assert.False(sim.Live(W).IsLeader);
        Assert.Equal(0, sim.Live(W).LeaderId);   // it no longer names the dead primary
        Assert.Equal(0, campaignMessages);
        Assert.Throws<InvalidOperationException>(() => sim.Live(W).CanCampaign = true);
    }

    [Fact]
    public void OneWayCutBetweenPrimaryAndBackup_DoesNotDeposeThePrimary()
    {
        var sim = Start();
        sim.Network.CutLink(P, B);
        long last = 0;
        for (int t = 0; t < 1000; t++)
        {
            if (t % 10 == 0) last = sim.Propose(P, EntryType.Input, Bytes($"t{t}"));
            sim.Step();
        }
        // The witness still hears the primary, so it refuses the backup's pre-votes: no ballot change, no fence.
        Assert.True(sim.Live(P).IsLeader);
        Assert.Equal(new Ballot(1, P), sim.Live(P).Ballot);
        Assert.Empty(sim.Fences);
        Assert.True(sim.AppliedBy(P) >= last - 1 && sim.AppliedBy(W) >= last - 1);

        sim.Network.HealAll();
        Assert.True(sim.RunUntil(() => sim.AppliedBy(B) >= last, 50), "backup did not catch up after healing");
        sim.CheckLogsAgree();
    }

    [Theory]
    [InlineData(512, 8192)]
    [InlineData(1, 1)]     // stop-and-wait
    [InlineData(2, 6)]
    public void HeavyLoss_IsRepairedByRetransmission(int batch, int window)
    {
        var sim = Start(config: id => new ConsensusConfig
        {
            SelfId = id, Members = SimCluster.DefaultConfig(id).Members, InitialLeaderId = P,
            MaxBatchEntries = batch, MaxInflightEntries = window,
        });
        sim.Network.DropRate = 0.5;
        sim.Network.DuplicateRate = 0.2;
        sim.Network.MaxDelay = 4;
        long last = 0;
        for (int t = 0; t < 300; t++)
        {
            if (sim.Leader() is { } l) last = Math.Max(last, sim.Propose(l.Id, EntryType.Input, Bytes($"t{t}")));
            sim.Step();
        }
        sim.Network.DropRate = 0;
        var leader = sim.Leader()!;
        long marker = sim.Propose(leader.Id, EntryType.Input, Bytes("marker"));
        Assert.True(sim.RunUntil(() => SimCluster.Ids.All(id => sim.AppliedBy(id) >= marker), 3000), "loss was not repaired");
        Assert.True(sim.MaxCommitted >= marker);
        sim.CheckLogsAgree();
    }

    [Fact]
    public void NodesRejoiningWithoutMemory_FollowTheCurrentLeaderAndCatchUp()
    {
        var sim = Start();
        for (int i = 0; i < 5; i++) ProposeAndCommit(sim, $"v{i}", P, B, W);
        sim.Crash(P);
        Assert.True(sim.RunUntil(() => sim.Live(B).IsLeader, 200));
        long x = ProposeAndCommit(sim, "after-failover", B, W);

        // The old primary's process comes back empty: it must not think it still leads ballot 1.
        sim.RestartEmpty(P);
        Assert.False(sim.Live(P).IsLeader);
        Assert.True(sim.RunUntil(() => sim.AppliedBy(P) >= x, 100), "memoryless node did not catch up");
        Assert.Equal(B, sim.Live(P).LeaderId);

        // Same for the witness, after the leader compacted its log (it skips ahead by itself).
        sim.Compact(B, sim.Live(B).AppliedIndex);
        sim.Crash(W);
        sim.RestartEmpty(W);
        long y = ProposeAndCommit(sim, "after-witness-restart", B, P, W);
        Assert.True(sim.Live(B).IsLeader);
        Assert.True(y > x);
        sim.CheckLogsAgree();
    }

    /// <summary>
    /// The lost-write sequence reproduced end to end: the primary runs with the witness alone (the backup is cut
    /// off from it), commits, and the witness restarts without memory while the primary cannot reach it. The stale
    /// backup reaches the empty witness first. An empty node must not vote before it has rebuilt its state from
    /// every other member, so nobody is elected without the entries the primary and the old witness committed.
    /// </summary>
    [Fact]
    public void EmptyWitness_DoesNotElectAStaleBackup_ThatLacksWhatThePrimaryAndOldWitnessCommitted()
    {
        var sim = Start();
        for (int i = 0; i < 3; i++) ProposeAndCommit(sim, $"before-{i}", P, B, W);
        sim.Network.CutLink(P, B);
        long x = 0;
        for (int i = 0; i < 5; i++) x = ProposeAndCommit(sim, $"primary-and-witness-{i}", P, W);
        Assert.False(sim.Live(B).Log.Contains(x));

        sim.Crash(W);
        sim.Network.CutLink(P, W);
        sim.RestartEmpty(W);
        sim.RunTicks(400);   // the backup campaigns against the empty witness (SimCluster fails on a leader lacking x)
        Assert.Null(sim.Leader());
        Assert.True(sim.Live(W).IsRecovering, "the witness voted before hearing from every other member");

        sim.Network.HealAll();
        Assert.True(sim.RunUntil(() => sim.Leader() is not null && !sim.Live(W).IsRecovering, 400), "no leader after healing");
        var leader = sim.Leader()!;
        Assert.True(leader.Log[x].SameValue(sim.Committed[x]));
        long y = ProposeAndCommit(sim, "after", P, B, W);
        Assert.True(y > x);
        sim.CheckLogsAgree();
    }

    /// <summary>
    /// A backup dropped by a committed ROLE entry (the primary ran on alone and released output unprotected) has a
    /// stale VM: the witness never lets it lead, even with the primary gone; the primary, back or reconnected after
    /// losing its quorum, is elected again.
    /// </summary>
    [Fact]
    public void ABackupDroppedByARoleEntry_IsNeverElected_ThePrimaryLeadsAgain()
    {
        var sim = Start();
        ProposeAndCommit(sim, "before", P, B, W);
        sim.Network.CutLink(P, B);
        var primary = sim.Live(P);
        long drop = sim.Propose(P, EntryType.Role, EntryPayloads.EncodeRole(primary.Ballot, P, 0));
        Assert.True(sim.RunUntil(() => sim.AppliedBy(W) >= drop, 50));
        long x = ProposeAndCommit(sim, "unprotected-write", P, W);
        Assert.Equal((P, 0), sim.Live(W).LatestRole);

        // The primary is cut off from both: it loses its quorum and steps down; the backup campaigns in vain.
        sim.Network.Isolate(P, SimCluster.Ids);
        Assert.True(sim.RunUntil(() => !primary.IsLeader, 100));
        sim.RunTicks(500);
        Assert.Null(sim.Leader());
        Assert.Equal(ConsensusRole.Follower, sim.Live(W).Role);

        sim.Network.HealAll();
        sim.Network.CutLink(P, B);
        Assert.True(sim.RunUntil(() => sim.Live(P).IsLeader, 300), "the primary was not elected again");
        Assert.True(sim.Live(P).Log[x].SameValue(sim.Committed[x]));

        // Gone for good: still nobody but the primary may lead.
        sim.Crash(P);
        sim.Network.HealAll();
        sim.RunTicks(500);
        Assert.Null(sim.Leader());
    }

    /// <summary>While the primary is protected by the backup, its answer alone cannot let a witness without memory recover.</summary>
    [Fact]
    public void AProtectedPrimary_AloneCannotRecoverAWitnessRestartedWithoutMemory()
    {
        var sim = Start();
        ProposeAndCommit(sim, "before", P, B, W);
        long protect = sim.Propose(P, EntryType.Role, EntryPayloads.EncodeRole(sim.Live(P).Ballot, P, B));
        Assert.True(sim.RunUntil(() => sim.AppliedBy(W) >= protect && sim.AppliedBy(B) >= protect, 50));
        sim.Crash(B);
        sim.Crash(W);
        sim.RestartEmpty(W);
        sim.RunTicks(200);
        Assert.True(sim.Live(W).IsRecovering);
        Assert.Null(sim.Leader());

        sim.Restart(B);
        Assert.True(sim.RunUntil(() => !sim.Live(W).IsRecovering && sim.Leader() is not null, 300), "no recovery with every member back");
        sim.CheckLogsAgree();
    }

    /// <summary>
    /// The backup is dead and the primary runs alone (a committed ROLE without backup): the witness restarts without
    /// memory. Only the primary can lead from then on, so its answer alone lets the witness recover; the primary,
    /// which lost its quorum meanwhile, is elected again, and the backup restarted without memory recovers from it.
    /// </summary>
    [Fact]
    public void APrimaryRunningAlone_SurvivesAWitnessRestartWithoutMemory()
    {
        var sim = Start();
        ProposeAndCommit(sim, "before", P, B, W);
        sim.Crash(B);
        var primary = sim.Live(P);
        long drop = sim.Propose(P, EntryType.Role, EntryPayloads.EncodeRole(primary.Ballot, P, 0));
        Assert.True(sim.RunUntil(() => sim.AppliedBy(W) >= drop && primary.CommitIndex >= drop, 50));
        long x = ProposeAndCommit(sim, "unprotected-write", P, W);

        // The witness restarts without memory and stays away long enough for the primary to lose its quorum.
        sim.Crash(W);
        Assert.True(sim.RunUntil(() => !primary.IsLeader, 100));
        sim.RestartEmpty(W);
        Assert.True(sim.RunUntil(() => !sim.Live(W).IsRecovering, 100), "the sole primary's answer was not enough");
        Assert.True(sim.Live(W).Log[x].SameValue(sim.Committed[x]));
        Assert.True(sim.RunUntil(() => primary.IsLeader, 300), "the primary was not elected again");
        long y = ProposeAndCommit(sim, "after-witness-restart", P, W);

        // The backup comes back without memory: it recovers from the sole primary and follows it.
        sim.RestartEmpty(B);
        Assert.True(sim.RunUntil(() => !sim.Live(B).IsRecovering && sim.AppliedBy(B) >= y, 200), "backup did not recover");
        Assert.False(sim.Live(B).IsLeader);
        sim.CheckLogsAgree();
    }

    /// <summary>The same with the backup restarted empty while the primary and witness moved on without it.</summary>
    [Fact]
    public void EmptyNode_RebuildsFromEveryOtherMember_AndOnlyThenVotes()
    {
        var sim = Start();
        for (int i = 0; i < 3; i++) ProposeAndCommit(sim, $"before-{i}", P, B, W);
        sim.Crash(B);
        sim.RestartEmpty(B);
        Assert.True(sim.Live(B).IsRecovering);
        sim.Network.CutLink(B, W);   // it hears the primary only: not enough
        sim.RunTicks(200);
        Assert.True(sim.Live(B).IsRecovering);
        Assert.Equal(0, sim.Live(B).CommitIndex);
        sim.Network.HealAll();
        Assert.True(sim.RunUntil(() => !sim.Live(B).IsRecovering, 100), "did not recover with every member reachable");
        Assert.Equal(sim.Live(P).Ballot, sim.Live(B).Ballot);
        long z = ProposeAndCommit(sim, "after", P, B, W);
        Assert.True(sim.Live(B).Log[z].SameValue(sim.Committed[z]));
        sim.CheckLogsAgree();
    }

    [Fact]
    public void RestartedNodeKeepsItsDurableLogAndPromise()
    {
        var sim = Start();
        long last = 0;
        for (int i = 0; i < 20; i++) last = ProposeAndCommit(sim, $"v{i}", P, B, W);
        var before = sim.Live(W).ExportDurableState();
        sim.Crash(W);
        sim.Restart(W);
        var w = sim.Live(W);
        Assert.Equal(before.Promised, w.Ballot);
        Assert.Equal(before.Log.LastIndex, w.LastIndex);
        Assert.Equal(ConsensusRole.Follower, w.Role);
        Assert.Equal(last, w.CommitIndex);
        for (long i = w.FirstIndex; i <= last; i++) Assert.True(w.Log[i].SameValue(sim.Committed[i]));
    }
}
