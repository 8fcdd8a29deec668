using Plover.Sync;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>
/// Disks in syncvm (issue 15 item 3) between two real engines over loopback TCP: both replicas' dirty blocks ORed,
/// hashed alike, only divergent blocks sent, staged and written with the RAM; a crash at every step leaves the
/// backup's drives at the previous sync point (or, once applied, at the new one), never in between, and the next
/// sync makes the replicas' drives equal again.
/// </summary>
public class SyncDiskTests
{
    private static readonly (string, ulong)[] Ram = [("pc.ram", 2UL << 20)];
    private static readonly (string, ulong)[] Drives = [("data0", 1UL << 20), ("data1", (256UL << 10) + 512)];
    private const int Block = 4096;

    private static byte[] Fill(byte value, int length) => Enumerable.Repeat(value, length).ToArray();

    private static void AssertDrivesEqual(SyncPair pair)
    {
        for (int d = 0; d < Drives.Length; d++)
            Assert.True(pair.PrimaryDisks!.Bytes(d).SequenceEqual(pair.BackupDisks!.Bytes(d)), $"drive {d} differs");
    }

    /// <summary>Alike writes on both sides (the same inputs), and divergent ones: 8 divergent blocks in all.</summary>
    private static void Write(SyncPair pair, int salt = 0)
    {
        foreach (var disks in new[] { pair.PrimaryDisks!, pair.BackupDisks! })
        {
            disks.GuestWrite(0, 0, Fill((byte)(0xaa + salt), 512));
            disks.GuestWrite(0, 8 * Block, Fill((byte)(0xbb + salt), 3 * Block));
        }
        pair.PrimaryDisks!.GuestWrite(0, 20 * Block, Fill((byte)(0x01 + salt), Block));
        pair.BackupDisks!.GuestWrite(0, 20 * Block, Fill((byte)(0x02 + salt), Block));
        pair.PrimaryDisks.GuestWrite(0, 40 * Block + 100, Fill((byte)(0x03 + salt), 10));
        pair.BackupDisks.GuestWrite(1, 5 * Block, Fill((byte)(0x04 + salt), Block));
        pair.PrimaryDisks.GuestWrite(1, 10 * Block - 4, Fill((byte)(0x05 + salt), 8));
        pair.PrimaryDisks.GuestWrite(1, 64 * Block, Fill((byte)(0x06 + salt), 512));   // the short last block
        pair.PrimaryDisks.GuestWrite(0, 100 * Block, Fill((byte)(0x07 + salt), 2 * Block));
    }

    private static SyncOptions Options(Action<SyncRole, SyncStep>? hook = null, bool checkpoint = false) => new()
    {
        PagesPerFrame = 2, HashesPerFrame = 4, Timeout = TimeSpan.FromSeconds(5), StepHook = hook, Checkpoint = checkpoint,
    };

    [Fact]
    public void OnlyDivergentBlocksTravel_AndTheBackupsDrivesEndEqual()
    {
        using var pair = new SyncPair(Ram, Options(), Options(), drives: Drives);
        Write(pair);
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(12UL, p.DiskUnionBlocks);
        Assert.Equal(12UL, b.DiskUnionBlocks);
        Assert.Equal(8UL, p.DiskDivergentBlocks);
        Assert.Equal(8UL, b.DiskDivergentBlocks);
        AssertDrivesEqual(pair);

        // the backup's writes were not its guest's: the next sync has nothing to compare
        (p, b) = pair.Sync(2);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(0UL, p.DiskUnionBlocks);
    }

    [Fact]
    public void AFullSyncSendsOnlyTheBlocksThatDiffer()
    {
        using var pair = new SyncPair(Ram, Options(), Options(), drives: Drives);
        pair.BackupDisks!.Write(0, 50 * Block, Fill(0x33, 3 * Block));   // an older copy: not dirty, different
        var (p, b) = pair.Sync(1, full: true);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(256UL + 65, p.DiskUnionBlocks);
        Assert.Equal(3UL, p.DiskDivergentBlocks);
        AssertDrivesEqual(pair);
    }

    [Fact]
    public void ACheckpointSendsEveryDirtyBlock()
    {
        using var pair = new SyncPair(Ram, Options(checkpoint: true), Options(checkpoint: true), drives: Drives);
        pair.PrimaryDisks!.GuestWrite(0, 7 * Block, Fill(0x44, 2 * Block));
        pair.BackupDisks!.GuestWrite(0, 7 * Block, Fill(0x44, 2 * Block));   // alike, still sent: no hashes
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(2UL, p.DiskDivergentBlocks);
        AssertDrivesEqual(pair);
    }

    public static TheoryData<SyncRole, SyncStep, int> Crashes()
    {
        var data = new TheoryData<SyncRole, SyncStep, int>();
        foreach (var role in new[] { SyncRole.Primary, SyncRole.Backup })
        {
            foreach (var step in new[] { SyncStep.Stopped, SyncStep.BitmapsExchanged, SyncStep.Hashed, SyncStep.BeforeDeviceState, SyncStep.BeforeApply })
                data.Add(role, step, 1);
            data.Add(role, SyncStep.DiskBatch, 1);   // the first blocks sent / staged
            data.Add(role, SyncStep.DiskBatch, 3);   // mid transfer
        }
        data.Add(SyncRole.Backup, SyncStep.Applying, 1);    // RAM half applied: torn, the drives not yet written
        data.Add(SyncRole.Backup, SyncStep.BeforeAck, 1);   // everything applied, ack never sent
        return data;
    }

    [Theory]
    [MemberData(nameof(Crashes))]
    public void CrashAtStep_LeavesTheBackupsDrivesOldOrNew_AndTheNextSyncMakesThemEqual(SyncRole victim, SyncStep step, int occurrence)
    {
        var crash = new InjectedCrash(victim, step, occurrence);
        var pair = crash.Pair = new SyncPair(Ram, Options(crash.Hook), Options(crash.Hook), drives: Drives);
        using var _ = pair;
        var work = new Workload(pair, seed: 7);
        work.Run(0.1, 0.5);   // RAM pages too, so Applying has a half to stop at
        Write(pair);
        byte[][] old = [pair.BackupDisks!.Bytes(0).ToArray(), pair.BackupDisks.Bytes(1).ToArray()];

        crash.Armed = true;
        var (p, b) = pair.Sync(1);
        crash.Armed = false;
        Assert.Equal(occurrence, crash.Seen);
        Assert.Equal(SyncOutcome.Aborted, victim == SyncRole.Primary ? p.Outcome : b.Outcome);

        bool applied = (victim == SyncRole.Primary && step == SyncStep.BeforeApply) || (victim == SyncRole.Backup && step == SyncStep.BeforeAck);
        if (applied)
            AssertDrivesEqual(pair);
        else
            for (int d = 0; d < Drives.Length; d++)
                Assert.True(old[d].AsSpan().SequenceEqual(pair.BackupDisks.Bytes(d)), $"drive {d} of the backup changed in an aborted sync");

        // the dirt taken in the aborted sync is covered by the next one
        pair.Connect();
        (p, b) = pair.Sync(2);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        AssertDrivesEqual(pair);
        Assert.False(pair.Backup.StateInvalid);
    }
}
