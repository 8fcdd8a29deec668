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

    private static SyncOptions Options(Action<SyncRole, SyncStep>? hook = null, bool checkpoint = false, ulong chunkBlocks = 1 << 14) => new()
    {
        PagesPerFrame = 2, HashesPerFrame = 4, Timeout = TimeSpan.FromSeconds(5), StepHook = hook, Checkpoint = checkpoint,
        DiskChunkBytes = (long)chunkBlocks * Block,
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
        Assert.True(b.Outcome == SyncOutcome.Completed, b.ToString());
        Assert.Equal(0UL, p.DiskUnionBlocks);
    }

    /// <summary>The backup dies in the middle of writing its drives (here: its third block write fails): the drives
    /// are neither sync point, so the backup is invalid and its images are marked torn (a mark that outlives the
    /// process); the marks are written once, before the first block, and the next sync removes them.</summary>
    [Fact]
    public void ABackupThatFailsMidWayThroughItsDiskWrites_IsInvalidAndMarkedTorn_UntilTheNextSync()
    {
        using var pair = new SyncPair(Ram, Options(), Options(), drives: Drives);
        Write(pair);
        pair.BackupDisks!.FailWriteAfter = 2;
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Aborted, b.Outcome);
        Assert.Contains("INVALID", b.Error);
        Assert.True(pair.Backup.StateInvalid);
        Assert.True(pair.BackupDisks.Torn);
        Assert.Equal(1, pair.BackupDisks.MarksWritten);
        Assert.Equal(2, pair.BackupDisks.Writes);

        pair.BackupDisks.FailWriteAfter = -1;
        pair.Connect();
        (p, b) = pair.Sync(2);
        Assert.True(b.Outcome == SyncOutcome.Completed, b.ToString());
        Assert.False(pair.Backup.StateInvalid);
        Assert.False(pair.BackupDisks.Torn);
        AssertDrivesEqual(pair);
    }

    [Fact]
    public void ASparseDiskBitmapTravelsEncoded_NotAsEveryWord()
    {
        // a 64 MiB drive: its raw bitmap is 2 KiB each way; three dirty blocks encode in a few bytes
        (string, ulong)[] large = [("data0", 64UL << 20)];
        using var pair = new SyncPair(Ram, Options(), Options(), drives: large);
        pair.PrimaryDisks!.GuestWrite(0, 7 * Block, Fill(0x11, Block));
        pair.PrimaryDisks.GuestWrite(0, 9000 * Block, Fill(0x12, Block));
        pair.BackupDisks!.GuestWrite(0, 16000 * Block, Fill(0x13, Block));
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(3UL, p.DiskUnionBlocks);
        Assert.Equal(3UL, p.DiskDivergentBlocks);
        Assert.True(pair.PrimaryDisks.Bytes(0).SequenceEqual(pair.BackupDisks.Bytes(0)));
        // both RAM bitmaps (64 bytes raw) and both disk bitmaps, headers included, sent and received
        Assert.True(p.Wire.Bitmaps < 1024, $"the bitmaps took {p.Wire.Bitmaps} bytes");
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
            data.Add(role, SyncStep.DiskChunk, 1);   // the only chunk done
        }
        data.Add(SyncRole.Backup, SyncStep.Applying, 1);    // RAM half applied: torn, the drives not yet written
        data.Add(SyncRole.Backup, SyncStep.BeforeAck, 1);   // everything applied, ack never sent
        data.Add(SyncRole.Backup, SyncStep.DiskApplying, 1);   // RAM applied, the images marked torn, no block written yet
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

        // marked torn from before its first block write until the writes are done
        Assert.Equal(step == SyncStep.DiskApplying, pair.BackupDisks.Torn);
        Assert.Equal(step is SyncStep.DiskApplying or SyncStep.Applying, pair.Backup.StateInvalid);   // its RAM is torn in both
        Assert.Equal(applied || step == SyncStep.DiskApplying ? 1 : 0, pair.BackupDisks.MarksWritten);

        // the dirt taken in the aborted sync is covered by the next one
        pair.Connect();
        (p, b) = pair.Sync(2);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        AssertDrivesEqual(pair);
        Assert.False(pair.Backup.StateInvalid);
    }
}

/// <summary>
/// Issue 15 item 4: a full sync of drives larger than the chunk (<see cref="SyncOptions.DiskChunkBytes"/>; here 16
/// blocks, the drives' 321 blocks in 21 chunks) compares and sends the union chunk by chunk: only differing blocks
/// travel, each side holds one chunk of blocks at a time, progress is reported, and a backup that must take more than
/// a chunk's worth writes it as it comes, marked invalid until the sync completes (a crash leaves it so; the next
/// full sync repairs it).
/// </summary>
public class SyncDiskChunkTests
{
    private static readonly (string, ulong)[] Ram = [("pc.ram", 2UL << 20)];
    private static readonly (string, ulong)[] Drives = [("data0", 1UL << 20), ("data1", (256UL << 10) + 512)];
    private const int Block = 4096;
    private const ulong Chunk = 16, Blocks = 256 + 65, Chunks = 21;

    private static SyncOptions Options(Action<SyncRole, SyncStep>? hook = null, bool checkpoint = false, List<string>? log = null) => new()
    {
        PagesPerFrame = 4, HashesPerFrame = 8, Timeout = TimeSpan.FromSeconds(5), StepHook = hook, Checkpoint = checkpoint,
        DiskChunkBytes = (long)Chunk * Block, Log = log is null ? null : m => { lock (log) log.Add(m); },
    };

    private static void AssertDrivesEqual(SyncPair pair)
    {
        for (int d = 0; d < Drives.Length; d++)
            Assert.True(pair.PrimaryDisks!.Bytes(d).SequenceEqual(pair.BackupDisks!.Bytes(d)), $"drive {d} differs");
    }

    /// <summary>The backup's drives hold other bytes everywhere (a new, empty or unrelated disk).</summary>
    private static void Scramble(SyncPair pair)
    {
        for (int d = 0; d < Drives.Length; d++) new Random(1000 + d).NextBytes(pair.BackupDisks!.Bytes(d));
    }

    [Fact]
    public void AFullSyncInChunks_SendsOnlyTheDifferingBlocks_HoldsOneChunk_AndShowsProgress()
    {
        var steps = new List<(SyncRole, SyncStep)>();
        ulong largest = 0;
        SyncPair? current = null;
        void Hook(SyncRole role, SyncStep step)
        {
            lock (steps) steps.Add((role, step));
            if (step == SyncStep.DiskChunk)
                largest = Math.Max(largest, role == SyncRole.Primary ? current!.Primary.DiskBufferBytes : current!.Backup.DiskBufferBytes);
        }
        var primaryLog = new List<string>();
        using var pair = current = new SyncPair(Ram, Options(Hook, log: primaryLog), Options(Hook), drives: Drives);
        pair.BackupDisks!.Write(0, 50 * Block, Enumerable.Repeat((byte)0x33, 3 * Block).ToArray());   // an older copy
        pair.BackupDisks.Write(1, 64 * Block, new byte[512]);                                           // the short last block

        var (p, b) = pair.Sync(1, full: true);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(Blocks, p.DiskUnionBlocks);
        Assert.Equal(Chunks, p.DiskChunks);
        Assert.Equal(Chunks, b.DiskChunks);
        Assert.Equal(4UL, p.DiskDivergentBlocks);
        Assert.Equal(4UL, b.DiskDivergentBlocks);
        AssertDrivesEqual(pair);
        Assert.False(pair.Backup.StateInvalid);
        // one chunk of blocks read (and, on the backup, at most one staged), not the drives' 1.3 MiB; given back after
        Assert.InRange(largest, 1UL, 2 * Chunk * Block);
        Assert.Equal(0UL, pair.Primary.DiskBufferBytes);
        Assert.Equal(0UL, pair.Backup.DiskBufferBytes);

        // the guest could resume only once the last chunk was read
        lock (steps)
        {
            int lastChunk = steps.LastIndexOf((SyncRole.Primary, SyncStep.DiskChunk));
            int resumed = steps.IndexOf((SyncRole.Primary, SyncStep.ResumedEarly));
            Assert.Equal((int)Chunks, steps.Count(s => s == (SyncRole.Primary, SyncStep.DiskChunk)));
            Assert.True(resumed < 0 || resumed > lastChunk, "the primary resumed before its last chunk was read");
        }

        var progress = pair.Primary.DiskProgress.Current;
        Assert.False(progress.Running);
        Assert.Equal((1UL, Blocks, Blocks, 4UL, Chunks, Chunks), (progress.Epoch, progress.Blocks, progress.BlocksDone, progress.BlocksSent, progress.Chunks, progress.ChunksDone));
        Assert.InRange(progress.BytesSent, 4UL * (Block + 8), 1UL << 20);
        Assert.Equal(Blocks, pair.Backup.DiskProgress.Current.BlocksDone);
        lock (primaryLog)
        {
            Assert.Contains(primaryLog, l => l.Contains($"compares {Blocks} blocks") && l.Contains($"in {Chunks} chunks of {Chunk} blocks"));
            Assert.Contains(primaryLog, l => l.Contains("disk 100%") && l.Contains($"{Blocks} of {Blocks} blocks compared, 4 sent"));
            Assert.Equal(10, primaryLog.Count(l => l.Contains("blocks compared")));   // at each tenth
        }

        // an ordinary sync after it is one small chunk, and not tracked
        pair.PrimaryDisks!.GuestWrite(0, 9 * Block, [1, 2, 3]);
        (p, b) = pair.Sync(2);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal((1UL, 1UL, 1UL), (p.DiskUnionBlocks, p.DiskChunks, p.DiskDivergentBlocks));
        Assert.Equal(1UL, pair.Primary.DiskProgress.Current.Epoch);
        AssertDrivesEqual(pair);
    }

    [Fact]
    public void ABackupWithAnotherDiskGetsEveryBlock_WrittenAsTheyCome()
    {
        var backupLog = new List<string>();
        using var pair = new SyncPair(Ram, Options(), Options(log: backupLog), drives: Drives);
        Scramble(pair);
        var (p, b) = pair.Sync(1, full: true);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(Blocks, p.DiskDivergentBlocks);
        Assert.Equal(Blocks, b.DiskDivergentBlocks);
        AssertDrivesEqual(pair);
        Assert.False(pair.Backup.StateInvalid);
        lock (backupLog) Assert.Contains(backupLog, l => l.Contains("writing them as they come") && l.Contains("INVALID until the sync completes"));
        Assert.Equal(Blocks, pair.Backup.DiskProgress.Current.BlocksSent);
    }

    [Fact]
    public void ACheckpointInChunksSendsEveryDirtyBlock()
    {
        using var pair = new SyncPair(Ram, Options(checkpoint: true), Options(checkpoint: true), drives: Drives);
        pair.PrimaryDisks!.GuestWrite(0, 3 * Block, new byte[40 * Block]);
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(3UL, p.DiskChunks);
        Assert.Equal(40UL, p.DiskDivergentBlocks);
        AssertDrivesEqual(pair);
    }

    public static TheoryData<SyncRole, SyncStep, int, bool> Crashes()
    {
        var data = new TheoryData<SyncRole, SyncStep, int, bool>();
        foreach (var role in new[] { SyncRole.Primary, SyncRole.Backup })
            foreach (bool scrambled in new[] { true, false })
            {
                data.Add(role, SyncStep.DiskChunk, 1, scrambled);    // the first chunk (still staged)
                data.Add(role, SyncStep.DiskChunk, 5, scrambled);    // mid sync: a scrambled backup wrote chunks already
                if (scrambled) data.Add(role, SyncStep.DiskBatch, 30, scrambled);   // inside a chunk (4 blocks a batch)
                data.Add(role, SyncStep.DiskChunk, (int)Chunks, scrambled);   // the last chunk
            }
        return data;
    }

    [Theory]
    [MemberData(nameof(Crashes))]
    public void CrashAtAChunkOfAFullSync_LeavesTheBackupOldOrInvalid_AndTheNextFullSyncRepairsIt(SyncRole victim, SyncStep step, int occurrence, bool scrambled)
    {
        var crash = new InjectedCrash(victim, step, occurrence);
        var pair = crash.Pair = new SyncPair(Ram, Options(crash.Hook), Options(crash.Hook), drives: Drives);
        using var _ = pair;
        if (scrambled) Scramble(pair);
        else pair.BackupDisks!.Write(0, 200 * Block, new byte[2 * Block]);
        byte[][] old = [pair.BackupDisks!.Bytes(0).ToArray(), pair.BackupDisks.Bytes(1).ToArray()];

        crash.Armed = true;
        var (p, b) = pair.Sync(1, full: true);
        crash.Armed = false;
        Assert.Equal(occurrence, crash.Seen);
        Assert.Equal(SyncOutcome.Aborted, victim == SyncRole.Primary ? p.Outcome : b.Outcome);

        bool unchanged = Enumerable.Range(0, Drives.Length).All(d => old[d].AsSpan().SequenceEqual(pair.BackupDisks.Bytes(d)));
        if (pair.Backup.StateInvalid)
            Assert.True(scrambled, "a backup whose divergent blocks fit in one chunk is marked invalid");
        else
            Assert.True(unchanged, "the backup's drives changed, and it is not marked invalid");
        // more than a chunk's worth arrived before the crash: it was written, and the backup says so, in memory and
        // in the mark its images keep across a restart
        Assert.Equal(scrambled && (step == SyncStep.DiskBatch || occurrence > 1), pair.Backup.StateInvalid);
        Assert.Equal(pair.Backup.StateInvalid, pair.BackupDisks.Torn);

        pair.Connect();
        (p, b) = pair.Sync(2, full: true);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        AssertDrivesEqual(pair);
        Assert.False(pair.Backup.StateInvalid);
        Assert.False(pair.BackupDisks.Torn);
    }
}
