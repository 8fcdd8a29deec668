using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Allocation;

/// <summary>
/// Steady-state consensus allocates nothing per input: three real drivers over loopback TCP commit thousands of
/// inputs after a warm-up, and the bytes the whole process allocated meanwhile are divided by the commits (or, idle,
/// by the heartbeats and acks). What remains is noise from the test's own waiting and the runtime, far below the
/// bound; one object per message (a decoded message, an entry array, a payload copy) would exceed it several times.
/// </summary>
[Collection(AllocationCollection.Name)]
public sealed class ConsensusAllocationTests(ITestOutputHelper output)
{
    private const int WarmUp = 5_000;
    private const int Commits = 20_000;
    /// <summary>Bytes per commit, amortised over the run, all three nodes together (each commit is at least four
    /// messages: an Accept and an Accepted per follower).</summary>
    private const double BytesPerCommit = 64;
    /// <summary>Bytes per heartbeat or ack sent, all nodes together, receiving included.</summary>
    private const double BytesPerMessage = 16;

    [Theory]
    [InlineData(1)]    // one input in flight: an Accept and an Accepted per input and follower
    [InlineData(64)]   // batching: inputs proposed while a round is in flight travel together
    public void CommitsAllocateNothing(int window)
    {
        using var trio = new ConsensusTrio(window, payloadBytes: 64);
        trio.Run(WarmUp);
        long messages = trio.MessagesSent;
        using var sampler = new AllocationSampler();
        var meter = AllocationMeter.Start();
        trio.Run(Commits);
        long bytes = meter.Bytes;
        int gcs = meter.Collections;
        messages = trio.MessagesSent - messages;
        double perCommit = (double)bytes / Commits;
        string report = $"window {window}: {bytes} bytes allocated for {Commits} commits ({messages} messages, {gcs} gen0 GCs): " +
                        $"{perCommit:F1} bytes per commit, {(double)bytes / messages:F1} per message; sampled: {sampler.Top()}";
        output.WriteLine(report);
        Assert.True(perCommit < BytesPerCommit, $"{report}; the bound is {BytesPerCommit} bytes per commit");
    }

    [Fact]
    public void HeartbeatsAllocateNothing()
    {
        using var trio = new ConsensusTrio(window: 1, payloadBytes: 64);
        trio.Run(WarmUp);
        Thread.Sleep(500);
        long messages = trio.MessagesSent;
        using var sampler = new AllocationSampler();
        var meter = AllocationMeter.Start();
        Thread.Sleep(3000);   // the leader sends a heartbeat every millisecond to each follower, and each answers
        long bytes = meter.Bytes;
        messages = trio.MessagesSent - messages;
        double perMessage = (double)bytes / messages;
        string report = $"idle 3 s: {bytes} bytes allocated for {messages} heartbeats and acks ({meter.Collections} gen0 GCs): {perMessage:F1} bytes per message; sampled: {sampler.Top()}";
        output.WriteLine(report);
        Assert.True(messages > 1000, $"{report}: too few heartbeats to tell");
        Assert.True(perMessage < BytesPerMessage, $"{report}; the bound is {BytesPerMessage} bytes per message");
    }
}
