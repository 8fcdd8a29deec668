using System.Buffers.Binary;
using Plover.Consensus;
using Plover.Node;
using Plover.Tests.Transport;
using Plover.Transport;
using Xunit;

namespace Plover.Tests.Allocation;

/// <summary>
/// A primary (node 1), a backup (node 2) and a witness (node 3): three consensus drivers over loopback TCP, as in
/// production (reader threads decode, the consensus thread steps and sends). The replicas compact their logs as
/// syncs would, so the log stays bounded; the witness follows the leader's compaction. Inputs are proposed on node 1,
/// with at most a window of them uncommitted.
/// </summary>
internal sealed class ConsensusTrio : IDisposable
{
    /// <summary>Entries a replica keeps behind each compaction point (syncvm compacts up to its cut).</summary>
    private const long Retained = 4096;

    private readonly TcpTransport[] _transports = new TcpTransport[3];
    private readonly ConsensusDriver[] _drivers = new ConsensusDriver[3];
    private readonly long[] _commitIndex = new long[3];
    private readonly SemaphoreSlim _commits = new(0);   // a release per input committed on node 1
    private readonly byte[] _payload;
    private long _inputsCommitted;
    private int _seq;

    public ConsensusTrio(int payloadBytes)
    {
        _payload = new byte[payloadBytes];
        var ids = new[] { 1, 2, 3 };
        var endpoints = TransportTestKit.Endpoints(ids, TransportTestKit.FreePorts(3));
        for (int i = 0; i < 3; i++)
        {
            // (an election is not what is measured)
            int slot = i;
            var (transport, driver) = TransportTestKit.StartConsensusNode(ids[i], endpoints, Log.Sink, electionMinTicks: 500, electionMaxTicks: 1000,
                                                                          retransmitTicks: 500, committed: e => OnCommitted(slot, e));
            _transports[i] = transport;
            _drivers[i] = driver;
        }
        Assert.True(TransportTestKit.WaitUntil(() => _transports.All(t => t.Peers.All(t.IsConnected))), Log.ToString());
        foreach (var d in _drivers) d.Start();
        Assert.True(TransportTestKit.WaitUntil(() => _drivers[0].IsLeader), "node 1 never led\n" + Log);
    }

    public TestLog Log { get; } = new();
    public IReadOnlyList<ConsensusDriver> Drivers => _drivers;

    /// <summary>Consensus messages sent by all three nodes so far.</summary>
    public long MessagesSent => _drivers.Sum(d => d.MessagesSent);

    // Under each driver's core lock: count, compact (replicas), wake the proposer (the leader).
    private void OnCommitted(int slot, LogEntry e)
    {
        Volatile.Write(ref _commitIndex[slot], e.Index);
        if (slot < 2 && e.Index % 1024 == 0 && e.Index > Retained) _drivers[slot].Compact(e.Index - Retained);
        if (slot == 0 && e.Type == EntryType.Input)
        {
            Interlocked.Increment(ref _inputsCommitted);
            _commits.Release();
        }
    }

    /// <summary>Proposes count inputs on node 1, at most window of them uncommitted, and waits until every node applied them.</summary>
    public void Run(int count, int window)
    {
        long target = Volatile.Read(ref _inputsCommitted) + count;
        for (int i = 0; i < count; i++)
        {
            // (Messages built only on failure: this loop is measured.)
            while (_seq - Volatile.Read(ref _inputsCommitted) >= window)
                if (!_commits.Wait(10_000)) Assert.Fail("no commit for 10 s\n" + Log);
            BinaryPrimitives.WriteInt32LittleEndian(_payload, ++_seq);
            if (!_drivers[0].Propose(EntryType.Input, _payload)) Assert.Fail("node 1 refused a proposal\n" + Log);
        }
        Assert.True(TransportTestKit.WaitUntil(() => Volatile.Read(ref _inputsCommitted) >= target, 20_000), "inputs did not commit\n" + Log);
        long index = Volatile.Read(ref _commitIndex[0]);
        Assert.True(TransportTestKit.WaitUntil(() => Volatile.Read(ref _commitIndex[1]) >= index && Volatile.Read(ref _commitIndex[2]) >= index, 20_000),
            "the followers did not apply everything\n" + Log);
        Assert.True(_drivers[0].IsLeader && _drivers[0].Term == 1, "an election happened during the run\n" + Log);
    }

    public void Dispose()
    {
        foreach (var d in _drivers) d?.Dispose();
        foreach (var t in _transports) t?.Dispose();
    }
}
