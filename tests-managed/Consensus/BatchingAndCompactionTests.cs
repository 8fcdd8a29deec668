using System.Text;
using Plover.Consensus;
using Xunit;

namespace Plover.Tests.Consensus;

public sealed class BatchingAndCompactionTests
{
    private const int P = SimCluster.Primary, B = SimCluster.Backup, W = SimCluster.Witness;

    [Fact]
    public void ManyProposals_TravelInFewPipelinedAccepts_AndCommitInOneRoundTrip()
    {
        // Slow heartbeats, so that only the eager commit notice can tell the followers quickly.
        var sim = new SimCluster(7, id => new ConsensusConfig
        {
            SelfId = id, Members = SimCluster.DefaultConfig(id).Members, InitialLeaderId = P, HeartbeatTicks = 5,
        });
        sim.RunTicks(3);
        var toBackup = new List<(long Tick, Message M)>();
        sim.Network.OnSend = m => { if (m.From == P && m.To == B && m is { Type: MessageType.Accept, Entries.Length: > 0 }) toBackup.Add((sim.Now, m)); };

        var primary = sim.Live(P);
        long first = primary.LastIndex + 1;
        long last = 0;
        for (int i = 0; i < 1000; i++)
            Assert.True(primary.TryPropose(EntryType.Input, Encoding.UTF8.GetBytes($"entry-{i}"), out last));
        Assert.True(sim.RunUntil(() => SimCluster.Ids.All(id => sim.AppliedBy(id) >= last), 10));

        // 1000 entries in ceil(1000 / MaxBatchEntries) Accepts, all sent in the same tick (pipelined, no waiting).
        int batch = primary.Config.MaxBatchEntries;
        Assert.True((1000 + batch - 1) / batch == toBackup.Count, string.Join("; ", toBackup.Select(s => $"t{s.Tick} {s.M}")));
        Assert.All(toBackup, s => Assert.Equal(toBackup[0].Tick, s.Tick));
        Assert.Equal(first, toBackup[0].M.Index);
        Assert.Equal(1000, toBackup.Sum(s => s.M.Entries.Length));
        // 1-tick links: Accepts arrive at +1, acknowledgements at +2 (leader commits and tells the followers at
        // once), followers commit at +3.
        Assert.Equal(3, sim.Now - toBackup[0].Tick);
    }

    [Fact]
    public void BatchesRespectTheByteLimit()
    {
        var sim = new SimCluster(8, id => new ConsensusConfig
        {
            SelfId = id, Members = SimCluster.DefaultConfig(id).Members, InitialLeaderId = P, MaxBatchBytes = 10_000,
        });
        sim.RunTicks(3);
        var sizes = new List<int>();
        sim.Network.OnSend = m => { if (m is { From: P, To: B, Type: MessageType.Accept, Entries.Length: > 0 }) sizes.Add(m.Entries.ToArray().Sum(e => e.Payload.Length)); };
        long last = 0;
        for (int i = 0; i < 50; i++) last = sim.Propose(P, EntryType.Input, new byte[1000]);
        // Proposals made one by one with a drain in between go out one by one; propose in bulk instead.
        var primary = sim.Live(P);
        for (int i = 0; i < 50; i++) primary.TryPropose(EntryType.Input, new byte[1000], out last);
        Assert.True(sim.RunUntil(() => sim.AppliedBy(B) >= last, 20));
        Assert.All(sizes, s => Assert.True(s <= 10_000));
        Assert.Contains(sizes, s => s == 10_000);
    }

    [Fact]
    public void WitnessFollowsTheLeadersCompaction()
    {
        var sim = new SimCluster(9);
        sim.RunTicks(3);
        long last = 0;
        for (int i = 0; i < 100; i++) last = sim.Propose(P, EntryType.Input, [(byte)i]);
        Assert.True(sim.RunUntil(() => SimCluster.Ids.All(id => sim.AppliedBy(id) >= last), 20));
        sim.Compact(P, 60);
        sim.Compact(B, 60);
        sim.RunTicks(3);
        Assert.Equal(61, sim.Live(P).FirstIndex);
        Assert.Equal(61, sim.Live(W).FirstIndex);
        Assert.Throws<ArgumentOutOfRangeException>(() => sim.Live(P).Compact(last + 1));
    }

    [Fact]
    public void BackupBehindTheCompactionPoint_GetsSnapshotNeeded_AndCatchesUpAfterInstalling()
    {
        var sim = new SimCluster(10) { AutoInstallSnapshots = false };
        sim.RunTicks(3);
        sim.Crash(B);
        long last = 0;
        for (int i = 0; i < 200; i++) last = sim.Propose(P, EntryType.Input, [(byte)i, (byte)(i >> 8)]);
        Assert.True(sim.RunUntil(() => sim.AppliedBy(P) >= last, 20));
        sim.Compact(P, 150);

        sim.Restart(B);
        Assert.True(sim.RunUntil(() => sim.SnapshotRequests.Count > 0, 50), "no snapshot request surfaced");
        var (node, need) = sim.SnapshotRequests[0];
        Assert.Equal(B, node);
        Assert.Equal(P, need.LeaderId);
        Assert.Equal(150, need.Index);

        // The syncvm layer copies the VM state as of index 150, then tells the core.
        sim.InstallSnapshot(B, 150);
        Assert.True(sim.RunUntil(() => sim.Live(B).CommitIndex >= last, 50), "backup did not catch up after the snapshot");
        Assert.Equal(151, sim.Live(B).FirstIndex);
        sim.CheckLogsAgree();
    }

    [Fact]
    public void WitnessBehindTheCompactionPoint_SkipsAheadByItself()
    {
        var sim = new SimCluster(11);
        sim.RunTicks(3);
        sim.Crash(W);
        long last = 0;
        for (int i = 0; i < 100; i++) last = sim.Propose(P, EntryType.Input, [(byte)i]);
        Assert.True(sim.RunUntil(() => sim.AppliedBy(B) >= last, 20));
        sim.Compact(P, 80);
        sim.Compact(B, 80);
        sim.Restart(W);
        Assert.True(sim.RunUntil(() => sim.AppliedBy(W) >= last, 50));
        Assert.Equal(81, sim.Live(W).FirstIndex);
        Assert.Empty(sim.SnapshotRequests);
    }
}
