using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Allocation;

/// <summary>
/// Steady-state consensus allocates nothing per input: three real drivers over loopback TCP commit thousands of
/// inputs after a warm-up, and the bytes the whole process allocated meanwhile are divided by the commits (or, idle,
/// by the heartbeats and acks), the least of three rounds (AllocationMeter.LeastPerUnit). What remains (under a byte
/// per commit or message) is the test's own waiting and the runtime; the bounds sit below the smallest object
/// (24 bytes), so one object per commit on any node, or one per heartbeat, fails. Before the allocation work: 2,374 bytes per commit with one input in flight, 486 with 64, 254
/// per heartbeat (a Message object per message sent and received, an entry array per Accept, a payload array per
/// entry, an enumerator per member lookup).
/// </summary>
[Collection(AllocationCollection.Name)]
public sealed class ConsensusAllocationTests(ITestOutputHelper output)
{
    /// <summary>Enough for the payload slabs to be reused: each node fills two 1 MiB slabs with 64-byte payloads
    /// (32,768 entries) before its compaction point passes the first. Run with 64 inputs in flight (quick).</summary>
    private const int WarmUp = 40_000;
    private const int Rounds = 3;
    private const int CommitsPerRound = 10_000;
    /// <summary>Bytes per commit, amortised over the run, all three nodes together (with one input in flight each
    /// commit is eight messages: an Accept, an Accepted and a commit notice and its ack per follower).</summary>
    private const double BytesPerCommit = 16;
    /// <summary>Bytes per heartbeat or ack sent, all nodes together, receiving included.</summary>
    private const double BytesPerMessage = 4;

    [Theory]
    [InlineData(1)]    // one input in flight: an Accept and an Accepted per input and follower
    [InlineData(64)]   // batching: inputs proposed while a round is in flight travel together
    public void CommitsAllocateNothing(int window)
    {
        using var trio = new ConsensusTrio(payloadBytes: 64);
        trio.Run(WarmUp, window: 64);
        using var sampler = new AllocationSampler();
        double perCommit = AllocationMeter.LeastPerUnit(Rounds, () =>
        {
            trio.Run(CommitsPerRound, window);
            return CommitsPerRound;
        }, out string rounds);
        string report = $"window {window}: {perCommit:F2} bytes per commit at least, rounds of {CommitsPerRound} commits: {rounds}; " +
                        $"sampled: {sampler.Top()}";
        output.WriteLine(report);
        Assert.True(perCommit < BytesPerCommit, $"{report}; the bound is {BytesPerCommit} bytes per commit");
    }

    [Fact]
    public void HeartbeatsAllocateNothing()
    {
        using var trio = new ConsensusTrio(payloadBytes: 64);
        trio.Run(5_000, window: 64);
        Thread.Sleep(500);
        using var sampler = new AllocationSampler();
        double perMessage = AllocationMeter.LeastPerUnit(Rounds, () =>
        {
            long before = trio.MessagesSent;
            Thread.Sleep(1000);   // the leader sends a heartbeat every millisecond to each follower, and each answers
            return trio.MessagesSent - before;
        }, out string rounds);
        string report = $"idle: {perMessage:F2} bytes per heartbeat or ack at least, rounds of 1 s: {rounds}; sampled: {sampler.Top()}";
        output.WriteLine(report);
        Assert.True(trio.MessagesSent > 3000, $"{report}: too few heartbeats to tell");
        Assert.True(perMessage < BytesPerMessage, $"{report}; the bound is {BytesPerMessage} bytes per message");
    }
}
