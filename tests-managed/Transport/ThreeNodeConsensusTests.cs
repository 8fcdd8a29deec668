using System.Buffers.Binary;
using Plover.Consensus;
using Plover.Node;
using Plover.Transport;
using Xunit;

namespace Plover.Tests.Transport;

/// <summary>Three ConsensusDrivers running the real core over real loopback TCP in one process.</summary>
public sealed class ThreeNodeConsensusTests : IDisposable
{
    private sealed class TestNode : IDisposable
    {
        public required TcpTransport Transport;
        public required ConsensusDriver Driver;
        public required List<LogEntry> Committed;
        public required TestLog Log;
        public bool Disposed;

        public LogEntry[] Snapshot()
        {
            lock (Committed) return Committed.ToArray();
        }

        public void Dispose()
        {
            if (Disposed) return;
            Disposed = true;
            Driver.Dispose();
            Transport.Dispose();
        }
    }

    private TestNode[] _nodes = [];

    private Dictionary<int, System.Net.IPEndPoint> _endpoints = new();

    private Plover.Transport.Ucx.UcxSettings? _ucx;   // null: over TCP

    private void StartCluster(bool inline)
    {
        var ids = new[] { 1, 2, 3 };
        _endpoints = TransportTestKit.Endpoints(ids, TransportTestKit.FreePorts(3));
        _nodes = ids.Select(id => StartNode(id, inline, restored: null)).ToArray();
        Assert.True(TransportTestKit.WaitUntil(() => _nodes.All(n => n.Transport.Peers.All(n.Transport.IsConnected))), Logs());
        foreach (var n in _nodes) n.Driver.Start();
    }

    private TestNode StartNode(int id, bool inline, DurableState? restored)
    {
        var log = new TestLog();
        // (this test is about safety, not speed)
        var committed = new List<LogEntry>();
        var (transport, driver) = TransportTestKit.StartConsensusNode(id, _endpoints, log.Sink, electionMinTicks: 100, electionMaxTicks: 300,
                                                                      retransmitTicks: 10, inline, restored, e => { lock (committed) committed.Add(e); },
                                                                      ucx: _ucx);
        return new TestNode { Transport = transport, Driver = driver, Log = log, Committed = committed };
    }

    public void Dispose()
    {
        foreach (var n in _nodes) n.Dispose();
    }

    private static byte[] Input(int proposer, int seq)
    {
        var b = new byte[64];
        BinaryPrimitives.WriteInt32LittleEndian(b, proposer);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4), seq);
        b.AsSpan(8).Fill((byte)seq);
        return b;
    }

    private string Logs() => string.Join("\n", _nodes.Select((n, i) => $"--- node {i + 1}\n{n.Log}"));

    /// <summary>Queues count inputs tagged proposer at node; false if it stopped leading before all were queued.</summary>
    private static bool ProposeAll(TestNode node, int proposer, int count)
    {
        for (int seq = 1; seq <= count; seq++)
        {
            var payload = Input(proposer, seq);
            while (!node.Driver.Propose(EntryType.Input, payload))
            {
                if (!node.Driver.IsLeader) return false;
                Thread.Yield();
            }
        }
        return true;
    }

    private static List<(int Proposer, int Seq)> Inputs(LogEntry[] log) =>
        log.Where(e => e.Type == EntryType.Input)
           .Select(e => (BinaryPrimitives.ReadInt32LittleEndian(e.Payload.Span), BinaryPrimitives.ReadInt32LittleEndian(e.Payload.Span[4..])))
           .ToList();

    /// <summary>
    /// Has whichever node leads propose count inputs under a fresh tag until one attempt commits everywhere it
    /// must (a leader change in the middle, rare but possible on a loaded host, abandons that attempt's tag).
    /// Returns the leader and the tag that made it.
    /// </summary>
    private (TestNode Leader, int Tag) CommitEverywhere(TestNode[] nodes, int count, int firstTag)
    {
        for (int attempt = 0; attempt < 5; attempt++)
        {
            TestNode? leader = null;
            Assert.True(TransportTestKit.WaitUntil(() => (leader = nodes.FirstOrDefault(n => n.Driver.IsLeader)) is not null, 10000), Logs());
            int tag = firstTag + attempt;
            if (!ProposeAll(leader!, tag, count)) continue;
            if (TransportTestKit.WaitUntil(() => nodes.All(n => Inputs(n.Snapshot()).Count(x => x.Proposer == tag) == count) || !leader!.Driver.IsLeader, 20000)
                && nodes.All(n => Inputs(n.Snapshot()).Count(x => x.Proposer == tag) == count))
                return (leader!, tag);
        }
        Assert.Fail($"no attempt committed {count} inputs on every node\n{Logs()}");
        return default;
    }

    /// <summary>Every node's committed log is a prefix of the longest one, index by index, with no gap.</summary>
    private static void AssertSameLog(IEnumerable<TestNode> nodes)
    {
        var logs = nodes.Select(n => n.Snapshot()).ToArray();
        var longest = logs.MaxBy(l => l.Length)!;
        foreach (var log in logs)
        {
            Assert.Equal(Enumerable.Range(1, log.Length).Select(i => (long)i), log.Select(e => e.Index));
            for (int i = 0; i < log.Length; i++) Assert.True(longest[i].SameValue(log[i]), $"logs differ at index {i + 1}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void CommitsInOrderAndSurvivesTheLossOfTheLeader(bool inlineProcessing)
    {
        CommitsAndSurvivesTheLeader(inlineProcessing);
    }

    /// <summary>The same over UCX (its TCP transport here; RDMA verbs on hosts that have them).</summary>
    [Ucx.UcxFact]
    public void OverUcx_CommitsInOrderAndSurvivesTheLossOfTheLeader()
    {
        _ucx = Plover.Transport.Ucx.UcxSettings.OverTcp;
        CommitsAndSurvivesTheLeader(inlineProcessing: false);
    }

    private void CommitsAndSurvivesTheLeader(bool inlineProcessing)
    {
        StartCluster(inlineProcessing);
        const int first = 5000;
        var (leader, tag) = CommitEverywhere(_nodes, first, firstTag: 100);
        foreach (var n in _nodes)
            Assert.Equal(Enumerable.Range(1, first).Select(s => (tag, s)), Inputs(n.Snapshot()).Where(x => x.Proposer == tag));
        AssertSameLog(_nodes);
        var before = leader.Snapshot().Length;

        // The leader dies: the other VM node takes over in a higher ballot with every committed entry.
        long term = leader.Driver.Term;
        leader.Dispose();
        var survivors = _nodes.Where(n => n != leader).ToArray();
        var successor = survivors.Single(n => n.Driver.SelfId != 3);
        Assert.True(TransportTestKit.WaitUntil(() => successor.Driver.IsLeader, 10000), $"node {successor.Driver.SelfId} did not take over\n{Logs()}");
        Assert.True(successor.Driver.Term > term);
        const int second = 500;
        var (_, tag2) = CommitEverywhere(survivors, second, firstTag: 200);
        foreach (var n in survivors)
        {
            var inputs = Inputs(n.Snapshot());
            Assert.Equal(Enumerable.Range(1, first).Select(s => (tag, s)), inputs.Where(x => x.Proposer == tag));
            Assert.Equal(Enumerable.Range(1, second).Select(s => (tag2, s)), inputs.Where(x => x.Proposer == tag2));
            Assert.True(n.Snapshot().Length > before);
            Assert.Contains(n.Snapshot().Skip(before), e => e.Type == EntryType.Role);
        }
        AssertSameLog(survivors);
    }

    /// <summary>
    /// The witness restarts without memory over real TCP: it starts recovering (no vote), rebuilds the log from
    /// both VM nodes, and then the backup can take over with the recovered witness alone, holding everything.
    /// </summary>
    [Fact]
    public void AWitnessRestartedWithoutMemoryRecoversBeforeItVotes()
    {
        StartCluster(inline: false);
        var (_, tag) = CommitEverywhere(_nodes, 300, firstTag: 100);
        _nodes[2].Dispose();
        _nodes[2] = StartNode(3, inline: false, DurableState.Empty);
        Assert.True(_nodes[2].Driver.IsRecovering);
        Assert.Equal("recovering", _nodes[2].Driver.RoleName);
        _nodes[2].Driver.Start();
        Assert.True(TransportTestKit.WaitUntil(() => !_nodes[2].Driver.IsRecovering, 10000), Logs());
        Assert.Contains("recovered: ballot", _nodes[2].Log.ToString());
        var (_, tag2) = CommitEverywhere(_nodes, 100, firstTag: 200);

        // The primary dies: the backup is elected with the recovered witness and holds everything.
        long term = _nodes[0].Driver.Term;
        _nodes[0].Dispose();
        Assert.True(TransportTestKit.WaitUntil(() => _nodes[1].Driver.IsLeader, 10000), Logs());
        Assert.True(_nodes[1].Driver.Term > term);
        var (_, tag3) = CommitEverywhere([_nodes[1], _nodes[2]], 50, firstTag: 300);
        foreach (var n in _nodes[1..])
        {
            var inputs = Inputs(n.Snapshot());
            Assert.Equal(Enumerable.Range(1, 300).Select(s => (tag, s)), inputs.Where(x => x.Proposer == tag));
            Assert.Equal(Enumerable.Range(1, 100).Select(s => (tag2, s)), inputs.Where(x => x.Proposer == tag2));
            Assert.Equal(Enumerable.Range(1, 50).Select(s => (tag3, s)), inputs.Where(x => x.Proposer == tag3));
        }
        AssertSameLog(_nodes[1..]);
    }
}
