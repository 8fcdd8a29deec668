using System.Collections.Concurrent;
using Plover.Consensus;
using Plover.Node;
using Plover.Tests.Transport;
using Xunit;

namespace Plover.Tests.Replica;

public sealed class ReplicaInputBatcherTests
{
    private static byte[] Frame(int seq, int length) => ReplicaCluster.Frame(seq, length);

    [Fact]
    public void Backlog_is_split_into_entries_no_larger_than_the_limit_in_arrival_order_per_nic()
    {
        var entries = new ConcurrentQueue<byte[]>();
        using var batcher = new ReplicaInputBatcher(2048, 1 << 20, p => { entries.Enqueue(p.ToArray()); return true; });
        for (int s = 1; s <= 100; s++) Assert.True(batcher.Add(s % 2, Frame(s, 100 + s * 3)));
        Assert.True(TransportTestKit.WaitUntil(() => entries.Sum(e => EntryFrames(e).Frames.Count) == 100));

        var perNic = new Dictionary<int, List<int>> { [0] = new(), [1] = new() };
        foreach (var e in entries)
        {
            Assert.True(e.Length <= 2048, $"entry of {e.Length} bytes");
            var (nic, frames) = EntryFrames(e);
            foreach (var f in frames)
            {
                int seq = BitConverter.ToInt32(f.Span);
                Assert.True(f.Span.SequenceEqual(Frame(seq, 100 + seq * 3)));
                perNic[nic].Add(seq);
            }
        }
        Assert.True(entries.Count > 2);   // split
        Assert.Equal(Enumerable.Range(1, 100).Where(s => s % 2 == 0), perNic[0]);
        Assert.Equal(Enumerable.Range(1, 100).Where(s => s % 2 == 1), perNic[1]);
    }

    [Fact]
    public void Frames_beyond_the_backlog_limit_or_refused_proposals_are_counted_as_dropped()
    {
        var gate = new ManualResetEventSlim(false);
        var entered = new ManualResetEventSlim(false);
        using var batcher = new ReplicaInputBatcher(4096, 1000, _ => { entered.Set(); gate.Wait(); return false; });
        Assert.True(batcher.Add(0, Frame(1, 600)));
        Assert.True(entered.Wait(10000));   // the thread took the first frame and blocks in the refusing proposer
        Assert.True(batcher.Add(0, Frame(2, 600)));
        Assert.False(batcher.Add(0, Frame(3, 600)));   // 1200 bytes waiting > 1000
        Assert.False(batcher.Add(0, Frame(4, 5000)));  // larger than an entry
        gate.Set();
        Assert.True(TransportTestKit.WaitUntil(() => batcher.FramesDropped == 4));
        Assert.Equal(2, batcher.EntriesRefused);
    }

    private static (int Nic, List<ReadOnlyMemory<byte>> Frames) EntryFrames(byte[] entry)
    {
        var frames = new List<ReadOnlyMemory<byte>>();
        int nic = EntryPayloads.DecodeInput(entry, frames);
        return (nic, frames);
    }
}
