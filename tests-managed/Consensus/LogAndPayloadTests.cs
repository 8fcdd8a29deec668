using Plover.Consensus;
using Xunit;

namespace Plover.Tests.Consensus;

public sealed class LogAndPayloadTests
{
    private static LogEntry E(long i, long round = 1) => new(i, new Ballot(round, 1), EntryType.Input, new byte[] { (byte)i });

    [Fact]
    public void LogAppendsOverwritesAndRefusesGaps()
    {
        var log = new ConsensusLog();
        Assert.Equal((1L, 0L), (log.FirstIndex, log.LastIndex));
        for (int i = 1; i <= 5; i++) log.Set(E(i));
        log.Set(E(3, round: 2));
        Assert.Equal(new Ballot(2, 1), log[3].Ballot);
        Assert.Equal(5, log.LastIndex);
        Assert.Throws<ArgumentOutOfRangeException>(() => log.Set(E(7)));
        Assert.Throws<ArgumentOutOfRangeException>(() => log[6]);
    }

    [Fact]
    public void LogCompactsAndSlicesWithinLimits()
    {
        var log = new ConsensusLog();
        for (int i = 1; i <= 10; i++) log.Set(E(i));
        log.CompactThrough(4);
        Assert.Equal((5L, 10L), (log.FirstIndex, log.LastIndex));
        Assert.False(log.Contains(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => log.Slice(4, 10, 100));
        Assert.Equal([5L, 6, 7], log.Slice(5, 3, 100).Select(e => e.Index));
        Assert.Equal([5L, 6], log.Slice(5, 10, 2).Select(e => e.Index));   // 1 byte each
        Assert.Single(log.Slice(5, 10, 0));                                  // at least one entry
        Assert.Empty(log.Slice(11, 10, 100));
        log.CompactThrough(20);                                              // past the end: empty, next index 21
        Assert.Equal((21L, 20L), (log.FirstIndex, log.LastIndex));
        log.Set(E(21));
        Assert.Equal(21, log.LastIndex);
    }

    [Fact]
    public void InputPayloadRoundTripsFramesAndRejectsMalformedOnes()
    {
        var frames = new List<ReadOnlyMemory<byte>> { new byte[] { 1, 2, 3 }, Array.Empty<byte>(), new byte[1500] };
        byte[] payload = EntryPayloads.EncodeInput(7, frames);
        Assert.Equal(8 + 12 + 1503, payload.Length);
        var back = new List<ReadOnlyMemory<byte>>();
        Assert.Equal(7, EntryPayloads.DecodeInput(payload, back));
        Assert.Equal(frames.Select(f => f.ToArray()), back.Select(f => f.ToArray()));

        Assert.Throws<FormatException>(() => EntryPayloads.DecodeInput(payload.AsMemory(0, 7), new()));
        Assert.Throws<FormatException>(() => EntryPayloads.DecodeInput(payload.AsMemory(0, payload.Length - 1), new()));
        byte[] trailing = [.. payload, 0];
        Assert.Throws<FormatException>(() => EntryPayloads.DecodeInput(trailing, new()));
        byte[] hugeCount = (byte[])payload.Clone();
        hugeCount[4] = 0xFF; hugeCount[5] = 0xFF; hugeCount[6] = 0xFF; hugeCount[7] = 0x7F;
        Assert.Throws<FormatException>(() => EntryPayloads.DecodeInput(hugeCount, new()));
    }

    [Fact]
    public void SyncAndRolePayloadsRoundTrip()
    {
        Assert.Equal(42UL, EntryPayloads.DecodeSync(EntryPayloads.EncodeSync(42)));
        Assert.Equal((new Ballot(9, 2), 2, 0), EntryPayloads.DecodeRole(EntryPayloads.EncodeRole(new Ballot(9, 2), 2)));
        Assert.Equal((new Ballot(9, 2), 2, 1), EntryPayloads.DecodeRole(EntryPayloads.EncodeRole(new Ballot(9, 2), 2, 1)));
        Assert.Throws<FormatException>(() => EntryPayloads.DecodeSync(new byte[7]));
        Assert.Throws<FormatException>(() => EntryPayloads.DecodeRole(new byte[16]));
    }

    [Fact]
    public void SyncPayloadNamesTheNextModeOnlyWhenItChanges()
    {
        // No change: the 8-byte payload of builds before adaptive mode, read as no change.
        Assert.Equal(8, EntryPayloads.EncodeSync(7).Length);
        Assert.Equal((7UL, SyncModeChange.None), EntryPayloads.DecodeSyncWithMode(EntryPayloads.EncodeSync(7)));
        byte[] toCheckpoint = EntryPayloads.EncodeSync(7, SyncModeChange.Checkpoint);
        Assert.Equal([7, 0, 0, 0, 0, 0, 0, 0, 2], toCheckpoint);
        Assert.Equal((7UL, SyncModeChange.Checkpoint), EntryPayloads.DecodeSyncWithMode(toCheckpoint));
        Assert.Equal((7UL, SyncModeChange.Replicate), EntryPayloads.DecodeSyncWithMode(EntryPayloads.EncodeSync(7, SyncModeChange.Replicate)));
        Assert.Equal(7UL, EntryPayloads.DecodeSync(toCheckpoint));
        // A mode byte that names no mode, or a longer payload, is malformed (skipped alike on every replica).
        Assert.Throws<FormatException>(() => EntryPayloads.DecodeSyncWithMode([7, 0, 0, 0, 0, 0, 0, 0, 0]));
        Assert.Throws<FormatException>(() => EntryPayloads.DecodeSyncWithMode([7, 0, 0, 0, 0, 0, 0, 0, 3]));
        Assert.Throws<FormatException>(() => EntryPayloads.DecodeSyncWithMode(new byte[10]));
        Assert.Throws<ArgumentOutOfRangeException>(() => EntryPayloads.EncodeSync(7, (SyncModeChange)9));
    }

    [Fact]
    public void BallotsOrderByRoundThenNode()
    {
        Assert.True(new Ballot(2, 1) > new Ballot(1, 3));
        Assert.True(new Ballot(2, 2) > new Ballot(2, 1));
        Assert.True(new Ballot(1, 1) <= new Ballot(1, 1));
        Assert.Equal("3.2", new Ballot(3, 2).ToString());
    }
}
