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
        public readonly List<LogEntry> Committed = new();
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

    private readonly TestNode[] _nodes;

    public ThreeNodeConsensusTests()
    {
        var ids = new[] { 1, 2, 3 };
        var eps = TransportTestKit.Endpoints(ids, TransportTestKit.FreePorts(3));
        var members = new[] { new ConsensusMember(1, true), new ConsensusMember(2, true), new ConsensusMember(3, false) };
        _nodes = ids.Select(id =>
        {
            var log = new TestLog();
            var transport = new TcpTransport(TransportTestKit.Options(id, eps, log.Sink));
            var driver = new ConsensusDriver(new ConsensusDriverOptions
            {
                // Generous election timeouts: the machine running the tests is shared and small, and a thread that is
                // not scheduled for 30 ms would otherwise start an election (this test is about safety, not speed).
                Consensus = new ConsensusConfig
                {
                    SelfId = id, Members = members, InitialLeaderId = 1,
                    ElectionMinTicks = 100, ElectionMaxTicks = 300, RetransmitTicks = 10,
                },
                Log = log.Sink,
                Seed = id,
            }, transport);
            var node = new TestNode { Transport = transport, Driver = driver, Log = log };
            driver.Committed = e => { lock (node.Committed) node.Committed.Add(e); };
            var dispatcher = new FrameDispatcher();
            driver.Attach(dispatcher);
            transport.Start(dispatcher);
            return node;
        }).ToArray();
        Assert.True(TransportTestKit.WaitUntil(() => _nodes.All(n => n.Transport.Peers.All(n.Transport.IsConnected))), Logs());
        foreach (var n in _nodes) n.Driver.Start();
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

    private void ProposeAll(TestNode leader, int proposer, int count)
    {
        for (int seq = 1; seq <= count; seq++)
        {
            var payload = Input(proposer, seq);
            Assert.True(TransportTestKit.WaitUntil(() => leader.Driver.Propose(EntryType.Input, payload), 5000), $"node {proposer} refused proposal {seq}\n{Logs()}");
        }
    }

    private static List<(int Proposer, int Seq)> Inputs(LogEntry[] log) =>
        log.Where(e => e.Type == EntryType.Input)
           .Select(e => (BinaryPrimitives.ReadInt32LittleEndian(e.Payload.Span), BinaryPrimitives.ReadInt32LittleEndian(e.Payload.Span[4..])))
           .ToList();

    [Fact]
    public void CommitsInOrderAndSurvivesTheLossOfTheLeader()
    {
        var (n1, n2, n3) = (_nodes[0], _nodes[1], _nodes[2]);
        Assert.True(TransportTestKit.WaitUntil(() => n1.Driver.IsLeader, 5000), Logs());
        const int first = 5000;
        ProposeAll(n1, 1, first);
        Assert.True(TransportTestKit.WaitUntil(() => _nodes.All(n => Inputs(n.Snapshot()).Count >= first), 20000),
                    $"not all committed: {string.Join(", ", _nodes.Select(n => n.Snapshot().Length))}\n{Logs()}");
        var expected = Enumerable.Range(1, first).Select(s => (1, s)).ToList();
        foreach (var n in _nodes) Assert.Equal(expected, Inputs(n.Snapshot()).Take(first));
        // Every node saw the same log, index by index.
        var reference = n1.Snapshot();
        foreach (var n in _nodes)
        {
            var log = n.Snapshot();
            for (int i = 0; i < reference.Length && i < log.Length; i++)
            {
                Assert.Equal(reference[i].Index, log[i].Index);
                Assert.True(reference[i].SameValue(log[i]));
            }
        }

        // The primary dies: the backup takes over in a higher ballot with every committed entry.
        n1.Dispose();
        Assert.True(TransportTestKit.WaitUntil(() => n2.Driver.IsLeader, 10000), $"node 2 did not take over\n{Logs()}");
        Assert.True(n2.Driver.Term > 1);
        const int second = 500;
        ProposeAll(n2, 2, second);
        Assert.True(TransportTestKit.WaitUntil(() => Inputs(n2.Snapshot()).Count(x => x.Proposer == 2) == second &&
                                                     Inputs(n3.Snapshot()).Count(x => x.Proposer == 2) == second, 20000), Logs());
        foreach (var n in new[] { n2, n3 })
        {
            var inputs = Inputs(n.Snapshot());
            Assert.Equal(expected, inputs.Take(first));
            Assert.Equal(Enumerable.Range(1, second).Select(s => (2, s)), inputs.Where(x => x.Proposer == 2));
            var log = n.Snapshot();
            Assert.Contains(log, e => e.Type == EntryType.Role);
            Assert.Equal(Enumerable.Range(1, log.Length).Select(i => (long)i), log.Select(e => e.Index));
        }
    }
}
