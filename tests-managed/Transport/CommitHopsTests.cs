using Plover.Consensus;
using Plover.Node;
using Xunit;
using Stage = Plover.Node.CommitHops.Stage;

namespace Plover.Tests.Transport;

/// <summary>The commit path's hand-off timestamps (issue 18 item 2) over three real drivers on loopback TCP: every
/// sampled entry has each stage once, in the order the hops happen, on the leader and on the follower that acked.</summary>
public class CommitHopsTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EveryHopIsStamped_InTheOrderItHappens(bool inline)
    {
        var ids = new[] { 1, 2, 3 };
        var endpoints = TransportTestKit.Endpoints(ids, TransportTestKit.FreePorts(3));
        var log = new TestLog();
        long committed = 0;
        var nodes = ids.Select(id => TransportTestKit.StartConsensusNode(id, endpoints, log.Sink, 200, 400, 20, inline,
            committed: e => { if (id == 1) Interlocked.Exchange(ref committed, e.Index); }, traceHopsEvery: 2)).ToArray();
        try
        {
            Assert.True(TransportTestKit.WaitUntil(() => nodes.All(n => n.Transport.Peers.All(n.Transport.IsConnected))), log.ToString());
            foreach (var (_, d) in nodes) d.Start();
            var leader = nodes[0].Driver;
            for (int i = 0; i < 100; i++)
            {
                long before = Interlocked.Read(ref committed);
                Assert.True(leader.Propose(EntryType.Input, new byte[64]), log.ToString());
                Assert.True(TransportTestKit.WaitUntil(() => Interlocked.Read(ref committed) > before), log.ToString());
            }
            Assert.True(TransportTestKit.WaitUntil(() => nodes[1].Driver.CommitIndex >= leader.CommitIndex));

            var mine = leader.Hops!.Snapshot().Where(e => e.Ticks[(int)Stage.Proposed] != 0).ToList();
            var backup = nodes[1].Driver.Hops!.Snapshot().ToDictionary(e => e.Index);
            Assert.True(mine.Count >= 40, $"{mine.Count} sampled inputs on the leader");
            Assert.All(mine, e => Assert.Equal(0, e.Index % 2));
            int viaBackup = 0;
            foreach (var (index, ackFrom, t) in mine)
            {
                long[] order = [t[(int)Stage.Proposed], t[(int)Stage.Taken], t[(int)Stage.AcceptSent], t[(int)Stage.AcceptedReceived],
                                t[(int)Stage.AcceptedStepped], t[(int)Stage.Committed]];
                Assert.All(order, x => Assert.NotEqual(0, x));
                Assert.Equal(order.Order(), order);
                Assert.Contains(ackFrom, new[] { 2, 3 });
                if (ackFrom != 2) continue;
                viaBackup++;
                var b = backup[index].Ticks;
                long[] path = [t[(int)Stage.AcceptSent], b[(int)Stage.AcceptReceived], b[(int)Stage.AcceptStepped], b[(int)Stage.AcceptedSent],
                               t[(int)Stage.AcceptedReceived]];
                Assert.Equal(path.Order(), path);
            }
            Assert.True(viaBackup > 0 || mine.All(e => e.AckFrom == 3), "no acknowledgement attributed");
        }
        finally
        {
            foreach (var (t, d) in nodes) { d.Dispose(); t.Dispose(); }
        }
    }

    [Fact]
    public void Sampling_KeepsTheFirstSlotsAndOnlyTheFirstTimeOfAStage()
    {
        var hops = new CommitHops(every: 4, slots: 2);
        hops.Record(3, Stage.Taken, 10);     // not sampled
        hops.Record(4, Stage.Taken, 11);
        hops.Record(4, Stage.Taken, 99);     // recorded already
        hops.RecordRange(1, 100, Stage.AcceptedReceived, 12, from: 3);
        hops.Record(12, Stage.Taken, 13);    // past the slots
        var all = hops.Snapshot();
        Assert.Equal([4L, 8L], all.Select(e => e.Index));
        Assert.Equal(11, all[0].Ticks[(int)Stage.Taken]);
        Assert.Equal([12L, 12L], all.Select(e => e.Ticks[(int)Stage.AcceptedReceived]));
        Assert.Equal([3, 3], all.Select(e => e.AckFrom));
    }
}
