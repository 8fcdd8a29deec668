using Plover.Hashing;
using Plover.Sync;
using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Sync;

/// <summary>
/// Shortened sub-block hashes (SyncOptions.SubBlockHashBytes) and the REPAIR round: a differing sub-block whose
/// shortened hash equals the backup's stays behind, the page the backup would write then does not have the primary's
/// root (the hash of the page's full sub-block hashes), and the page is sent again whole before anything is written. Whatever the length, the replicas end
/// byte-identical; a crash inside the round leaves the backup old-or-invalid, never quietly wrong.
/// </summary>
public unsafe class SubBlockRepairTests(ITestOutputHelper output)
{
    private static readonly (string, ulong)[] Layout = [("pc.ram", 8UL << 20), ("rom", 12 * 1024)];
    private const int BlockBytes = 128;

    private static SyncOptions Options(int hashBytes, Action<SyncRole, SyncStep>? hook = null) => new()
    {
        SubBlockBytes = BlockBytes, SubBlockHashBytes = hashBytes, PagesPerFrame = 16, HashesPerFrame = 1000,
        Timeout = TimeSpan.FromSeconds(5), StepHook = hook, Log = _ => { },
    };

    /// <summary>Makes page differ between the replicas in sub-block 0 (plainly) and in sub-block 5, where the backup's
    /// bytes are chosen so that the low hashBytes bytes of its CityHash64 equal the primary's: the primary cannot see
    /// that sub-block differ.</summary>
    private static void Collide(SyncPair pair, ulong page, int hashBytes)
    {
        var p = pair.PrimaryMemory.Page(0, page);
        var b = pair.BackupMemory.Page(0, page);
        p[3] ^= 0x77;
        ulong keep = (1UL << (8 * hashBytes)) - 1;
        const int at = 5 * BlockBytes;
        ulong want;
        fixed (byte* pp = p) want = CityHash.Hash64(pp + at, BlockBytes) & keep;
        bool found = false;
        fixed (byte* bp = b)
        {
            for (uint v = 1; v < 1u << 24 && !found; v++)
            {
                bp[at] = (byte)v;
                bp[at + 1] = (byte)(v >> 8);
                bp[at + 2] = (byte)(v >> 16);
                found = (CityHash.Hash64(bp + at, BlockBytes) & keep) == want && !b.Slice(at, BlockBytes).SequenceEqual(p.Slice(at, BlockBytes));
            }
        }
        Assert.True(found, "no colliding sub-block found");
        pair.PrimaryMemory.Touch(0, page);
        pair.BackupMemory.Touch(0, page);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ACollidingSubBlock_IsCaughtByThePageRoot_AndThePageSentAgainWhole(int hashBytes)
    {
        using var pair = new SyncPair(Layout, Options(hashBytes), Options(8));   // only the primary's length counts
        Collide(pair, 10, hashBytes);
        Collide(pair, 700, hashBytes);
        var (p, b) = pair.Sync(1);
        output.WriteLine(p.ToString());
        output.WriteLine(b.ToString());
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
        Assert.Equal(2UL, p.DivergentPages);
        Assert.Equal(2UL, p.SubBlocks);            // sub-block 0 of each page: 5 passed for equal
        Assert.Equal(2UL, p.RepairedPages);
        Assert.Equal(2UL, b.RepairedPages);
        Assert.Equal(hashBytes, p.SubBlockHashBytes);
        Assert.Equal(hashBytes, b.SubBlockHashBytes);
        Assert.False(pair.Backup.StateInvalid);
        Assert.Equal(p.Wire.Total, b.Wire.Total);
    }

    [Fact]
    public void FullLengthHashes_SeeTheSameSubBlock_AndRepairNothing()
    {
        using var pair = new SyncPair(Layout, Options(8), Options(8));
        Collide(pair, 10, 2);   // collides in 2 bytes, not in 8
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
        Assert.Equal(2UL, p.SubBlocks);
        Assert.Equal(0UL, p.RepairedPages);
        Assert.Equal(0UL, b.RepairedPages);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void RandomWorkloads_AtEveryHashLength_LeaveMemoriesIdentical(int hashBytes)
    {
        using var pair = new SyncPair(Layout, Options(hashBytes), Options(hashBytes));
        var work = new Workload(pair, seed: hashBytes);
        ulong repaired = 0, hashes = 0, divergent = 0;
        for (int round = 1; round <= 4; round++)
        {
            work.Run(0.2, 0.5);
            var (p, b) = pair.Sync((ulong)round);
            Assert.Equal(SyncOutcome.Completed, p.Outcome);
            Assert.Equal(SyncOutcome.Completed, b.Outcome);
            Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
            Assert.Equal(p.RepairedPages, b.RepairedPages);
            repaired += p.RepairedPages;
            hashes += (ulong)p.Wire.Hashes;
            divergent += p.DivergentPages;
            work.Reset();
        }
        output.WriteLine($"{hashBytes}-byte hashes: {divergent} divergent pages, {repaired} repaired, {hashes} B of hashes");
        if (hashBytes == 1) Assert.True(repaired > 0, "1-byte hashes over thousands of differing sub-blocks must collide");
        if (hashBytes == 8) Assert.Equal(0UL, repaired);
    }

    [Fact]
    public void ShorterHashes_SendFewerBytes()
    {
        long Bytes(int hashBytes)
        {
            using var pair = new SyncPair(Layout, Options(hashBytes), Options(hashBytes));
            new Workload(pair, seed: 3).Run(0.2, 0.5);
            var (p, b) = pair.Sync(1);
            Assert.Equal(SyncOutcome.Completed, b.Outcome);
            return p.Wire.Hashes;
        }
        long eight = Bytes(8), two = Bytes(2);
        output.WriteLine($"sub-block hash bytes on the wire: 8-byte {eight}, 2-byte {two}");
        Assert.True(two * 3 < eight, $"2-byte hashes {two} B, 8-byte {eight} B");
    }

    /// <summary>A crash inside the repair round: on the backup, nothing is written yet (it keeps its old state, valid);
    /// on the primary, the whole pages are sent and the ack not read. Either way the primary holds the epoch's output,
    /// and the next sync leaves both identical.</summary>
    [Theory]
    [InlineData(SyncRole.Backup)]
    [InlineData(SyncRole.Primary)]
    public void CrashInTheRepairRound_NeverLeavesTheBackupQuietlyWrong(SyncRole victim)
    {
        bool armed = true;
        int seen = 0;
        void Hook(SyncRole role, SyncStep step)
        {
            if (!armed || role != victim || step != SyncStep.Repairing) return;
            seen++;
            throw new InvalidOperationException($"injected crash at {step} on the {role}");
        }
        using var pair = new SyncPair(Layout, Options(2, Hook), Options(2, Hook));
        Collide(pair, 10, 2);
        pair.PrimaryNic.GuestSends(42);
        var oldBackup = pair.BackupMemory.Snapshot();
        var (p, b) = pair.Sync(1);
        armed = false;
        Assert.Equal(1, seen);
        Assert.Equal(SyncOutcome.Aborted, p.Outcome);
        Assert.DoesNotContain(42, pair.PrimaryNic.Sent);
        if (victim == SyncRole.Backup)
        {
            Assert.Equal(SyncOutcome.Aborted, b.Outcome);
            Assert.False(pair.Backup.StateInvalid);
            Assert.True(pair.BackupMemory.Matches(oldBackup), "the backup wrote RAM before its repair was complete");
        }
        else if (b.Outcome == SyncOutcome.Completed)
            Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));   // it had everything it needed
        else
            Assert.True(pair.BackupMemory.Matches(oldBackup) || pair.Backup.StateInvalid);

        pair.Connect();
        var (p2, b2) = pair.Sync(2);
        Assert.Equal(SyncOutcome.Completed, p2.Outcome);
        Assert.Equal(SyncOutcome.Completed, b2.Outcome);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
        Assert.False(pair.Backup.StateInvalid);
        Assert.Contains(42, pair.PrimaryNic.Sent);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(16)]
    public void InvalidHashLength_IsRefused(int hashBytes) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new SyncPair(Layout, Options(hashBytes), Options(8)).Dispose());
}
