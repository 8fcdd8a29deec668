using System.Buffers.Binary;
using System.Diagnostics;
using Plover.Tests.Replica;
using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Allocation;

/// <summary>
/// The input path allocates nothing per frame: frames arrive at the primary (the batcher proposes them), commit
/// through real consensus over loopback TCP, and both replicas inject them on their main threads; a sync every
/// 2,000 frames compacts the logs, as the idle trigger would. The bytes the process allocated are divided by the
/// frames, syncs included (about 5 bytes per frame: a sync costs some KiB, see SyncAllocationTests), the least of
/// three rounds (AllocationMeter.LeastPerUnit). One object per
/// frame (24 bytes at least) fails the bound. Before the allocation work: 916 bytes per frame.
/// </summary>
[Collection(AllocationCollection.Name)]
public sealed class ReplicaAllocationTests(ITestOutputHelper output)
{
    private const int Burst = 16;
    private const int FramesPerSync = 2_000;
    private const int Rounds = 3;
    private const int FramesPerRound = 10_000;
    /// <summary>Bytes per input frame, amortised, the five syncs of a round included.</summary>
    private const double BytesPerFrame = 20;

    private readonly byte[] _frame = new byte[200];
    private int _seq;

    [Fact]
    public void InputsAllocateNothing()
    {
        using var c = new ReplicaCluster(record: false);
        c.SyncNow();   // the first sync compares every page
        Run(c, 3 * FramesPerSync);
        using var sampler = new AllocationSampler();
        double perFrame = AllocationMeter.LeastPerUnit(Rounds, () =>
        {
            Run(c, FramesPerRound);
            return FramesPerRound;
        }, out string rounds);
        string report = $"{perFrame:F2} bytes per input frame at least, rounds of {FramesPerRound} frames and " +
                        $"{FramesPerRound / FramesPerSync} syncs: {rounds}; sampled: {sampler.Top()}";
        output.WriteLine(report);
        Assert.Equal(0, c.PrimaryHost.Violations + c.BackupHost.Violations);
        Assert.True(perFrame < BytesPerFrame, $"{report}; the bound is {BytesPerFrame} bytes per frame");
    }

    /// <summary>Bursts of frames arrive at the primary (as a client's pipelined requests); each burst is injected by
    /// both replicas before the next one comes. A sync every FramesPerSync frames.</summary>
    private void Run(ReplicaCluster c, int frames)
    {
        for (int sent = 0; sent < frames; sent += Burst)
        {
            for (int i = 0; i < Burst; i++)
            {
                BinaryPrimitives.WriteInt32LittleEndian(_frame, ++_seq);
                if (!c.Primary.OnFrameToGuest(0, _frame)) Assert.Fail("the primary did not take a frame");
            }
            long deadline = Stopwatch.GetTimestamp() + 20 * Stopwatch.Frequency;
            while (c.PrimaryHost.InjectedCount < _seq || c.BackupHost.InjectedCount < _seq)
            {
                if (Stopwatch.GetTimestamp() > deadline) Assert.Fail($"frames not injected within 20 s\n{c.Log}");
                Thread.Sleep(1);
            }
            if ((sent + Burst) % FramesPerSync == 0) c.SyncNow();
        }
    }
}
