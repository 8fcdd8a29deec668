using Plover.Sync;
using Plover.Tests.Transport.Ucx;
using Plover.Transport.Ucx;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>The sync engines joined over UCX (its TCP transport here) instead of a TCP socket: same frames, same
/// outcomes, and the abort paths still close the connection and resume both VMs.</summary>
public sealed class SyncOverUcxTests
{
    private static readonly (string, ulong)[] Layout = [("pc.ram", 16UL << 20), ("vga.vram", 2UL << 20)];

    [UcxFact]
    public void Rounds_leave_memories_identical_and_send_exactly_the_divergent_pages()
    {
        using var pair = new SyncPair(Layout, ucx: UcxSettings.OverTcpOneSided);
        var work = new Workload(pair, seed: 3);
        double[] fractions = [0.01, 0.2, 0.05];
        for (int round = 0; round < fractions.Length; round++)
        {
            pair.PrimaryVm.DeviceState = Enumerable.Range(0, 3000 + round).Select(i => (byte)(i * (round + 5))).ToArray();
            work.Run(fractions[round], 0.3);
            int expected = work.CountDivergent();
            ulong ramBefore = pair.BackupVm.RamUpdatedBytes;
            var (p, b) = pair.Sync((ulong)round + 1);
            Assert.Equal(SyncOutcome.Completed, p.Outcome);
            Assert.Equal(SyncOutcome.Completed, b.Outcome);
            Assert.Equal((ulong)expected, b.DivergentPages);
            Assert.Equal((ulong)expected * 4096, pair.BackupVm.RamUpdatedBytes - ramBefore);
            Assert.Equal(p.Wire.Total, b.Wire.Total);
            Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
            Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
            work.Reset();
        }
        var (full, _) = pair.Sync(10, full: true);
        Assert.Equal(SyncOutcome.Completed, full.Outcome);
        Assert.True(pair.Backup.Connection!.OneSidedFrames > 0, "no page frame was written one-sided");
    }

    [UcxFact]
    public void Pages_written_one_sided_wrap_around_the_ring_and_every_sync_applies_them_all()
    {
        var wholePages = new SyncOptions { SubBlockBytes = 0, Log = _ => { } };   // pages whole, not their changed 64-byte blocks
        using var pair = new SyncPair([("pc.ram", 24UL << 20)], wholePages, wholePages, ucx: UcxSettings.OverTcpOneSided);
        var work = new Workload(pair, seed: 11);
        for (int round = 0; round < 4; round++)
        {
            work.Run(0.6, 1.0);   // ~14 MiB of divergent pages per sync: the 16 MiB ring wraps from the second one on
            int expected = work.CountDivergent();
            var (p, b) = pair.Sync((ulong)round + 1);
            Assert.Equal(SyncOutcome.Completed, p.Outcome);
            Assert.Equal(SyncOutcome.Completed, b.Outcome);
            Assert.Equal((ulong)expected, b.DivergentPages);
            Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
            work.Reset();
        }
        Assert.True(pair.Backup.Connection!.OneSidedBytes > (long)UcxFrameRing.DefaultRingBytes * 2,
            $"only {pair.Backup.Connection.OneSidedBytes} bytes came one-sided");
    }

    /// <summary>UCX page puts: the divergent pages (whole, or their differing sub-blocks) go by ucp_put straight into
    /// the backup's staging buffer, the stream carries only their numbers and hashes, and the memories end identical.
    /// The staging buffer is registered once and kept while later syncs fit in it; a full sync gives it back.</summary>
    [UcxTheory]
    [InlineData(0)]
    [InlineData(SyncOptions.DefaultSubBlockBytes)]
    public void Page_puts_carry_the_divergent_pages_and_leave_memories_identical(int subBlockBytes)
    {
        var options = new SyncOptions { SubBlockBytes = subBlockBytes, PutPagesPerBatch = 100, Log = _ => { } };
        using var pair = new SyncPair(Layout, options, options, ucx: UcxSettings.OverTcpPagePuts);
        var work = new Workload(pair, seed: 21);
        double[] fractions = [0.2, 0.01, 0.05, 0.1];   // the first sync's union is the largest: one registration
        for (int round = 0; round < fractions.Length; round++)
        {
            pair.PrimaryVm.DeviceState = Enumerable.Range(0, 2000 + round).Select(i => (byte)(i * (round + 3))).ToArray();
            work.Run(fractions[round], 0.3);
            int expected = work.CountDivergent();
            var (p, b) = pair.Sync((ulong)round + 1);
            Assert.Equal(SyncOutcome.Completed, p.Outcome);
            Assert.Equal(SyncOutcome.Completed, b.Outcome);
            Assert.Equal((ulong)expected, b.DivergentPages);
            Assert.True(p.Puts > 0, $"round {round}: no puts");
            Assert.True(p.Puts <= (ulong)expected, $"round {round}: {p.Puts} puts for {expected} pages");
            if (subBlockBytes == 0) Assert.Equal((ulong)(expected + 99) / 100, p.Puts);   // one per batch of 100 pages
            Assert.Equal(p.PageDataBytes, p.PutBytes);   // every page byte went by put
            Assert.Equal(p.PutBytes, b.PutBytes);         // and the backup checked every one of them
            // the frames carry hashes, not the data (a 64-byte sub-block's completion holds its 8-byte hash and a
            // share of its page's mask and page hash: about 3/8 of the data when pages differ in one sub-block)
            Assert.True((ulong)p.Wire.Pages < p.PutBytes / 2, $"round {round}: {p.Wire.Pages} bytes of page frames for {p.PutBytes} bytes put");
            Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
            Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
            work.Reset();
        }
        Assert.Equal(1, pair.Backup.StagingRegistrations);

        work.Run(0.05, 1.0);
        var (full, fullBackup) = pair.Sync(10, full: true);   // whole pages, every page compared
        Assert.Equal(SyncOutcome.Completed, full.Outcome);
        Assert.True(full.Puts > 0);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
        work.Reset();
        work.Run(0.01, 0.5);
        var (after, _) = pair.Sync(11);
        Assert.Equal(SyncOutcome.Completed, after.Outcome);
        // the full sync's union is all of RAM (registered again, larger), and it gave that staging back after it
        Assert.Equal(3, pair.Backup.StagingRegistrations);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
    }

    /// <summary>Checkpoint syncs have no hashes to check puts against: the backup offers no staging and the pages
    /// travel in frames, as over TCP.</summary>
    [UcxFact]
    public void A_checkpoint_sync_sends_pages_in_frames_even_with_page_puts()
    {
        var options = new SyncOptions { Checkpoint = true, Log = _ => { } };
        using var pair = new SyncPair(Layout, options, options, ucx: UcxSettings.OverTcpPagePuts);
        var rng = new Random(5);
        for (int i = 0; i < 200; i++)   // the primary's writes only: a checkpoint backup's VM does not run
            pair.PrimaryMemory.Write(0, (ulong)rng.Next(4096), rng.Next(512) * 8, (ulong)rng.NextInt64());
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(0UL, p.Puts);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
    }

    [UcxFact]
    public void An_epoch_mismatch_aborts_both_and_a_reconnected_pair_syncs_again()
    {
        using var pair = new SyncPair(Layout, ucx: UcxSettings.OverTcp);   // the stream only (oneSided off, the default)
        var p = pair.Primary.RunAsync(new SyncRequest(5, 500));
        var b = pair.Backup.RunAsync(new SyncRequest(6, 600));
        Assert.Equal(SyncOutcome.Aborted, p.Result.Outcome);
        Assert.Equal(SyncOutcome.Aborted, b.Result.Outcome);
        Assert.Contains("e6", p.Result.Error);
        Assert.True(pair.PrimaryVm.Running && pair.BackupVm.Running);
        Assert.Null(pair.Primary.Connection);

        pair.Backup.Connection?.Dispose();
        pair.Connect();
        new Workload(pair, seed: 9).Run(0.02, 0.5);
        var (p2, b2) = pair.Sync(7);
        Assert.Equal(SyncOutcome.Completed, p2.Outcome);
        Assert.Equal(SyncOutcome.Completed, b2.Outcome);
        Assert.Null(pair.PrimaryMemory.FirstDifference(pair.BackupMemory));
    }

    [UcxFact]
    public void A_backup_that_vanishes_mid_wait_makes_the_primary_abort_at_once()
    {
        using var pair = new SyncPair(Layout, new SyncOptions { Timeout = TimeSpan.FromSeconds(20), Log = _ => { } }, ucx: UcxSettings.OverTcpOneSided);
        var p = pair.Primary.RunAsync(new SyncRequest(1, 100));   // the backup never joins this sync
        Thread.Sleep(200);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        pair.Backup.Connection!.Dispose();
        Assert.True(p.Wait(TimeSpan.FromSeconds(10)), "the primary kept waiting");
        Assert.Equal(SyncOutcome.Aborted, p.Result.Outcome);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"noticed after {clock.Elapsed}");
        Assert.True(pair.PrimaryVm.Running);
    }
}

/// <summary>A primary that lies in its SyncPut announcements: the backup aborts with the reason, applies nothing,
/// and its VM runs on.</summary>
public sealed class HostileOneSidedTests
{
    private static string Attack(ulong position, ulong length, Plover.Transport.Ucx.UcxSettings? ucx)
    {
        using var pair = new SyncPair([("pc.ram", 1UL << 20)], backupOptions: new SyncOptions { Timeout = TimeSpan.FromSeconds(5), Log = _ => { } }, ucx: ucx);
        var old = pair.BackupMemory.Snapshot();
        var connection = pair.Primary.Connection!;
        pair.Primary.Connection = null;   // the test speaks for the primary
        var backup = pair.Backup.RunAsync(new SyncRequest(1, 10));
        var tail = new byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(tail, position);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(tail.AsSpan(8), length);
        connection.Send(new RawBody(Plover.Transport.FrameType.SyncPut, new Plover.Wire.SyncAck(), tail));
        var stats = backup.Result;
        Assert.Equal(SyncOutcome.Aborted, stats.Outcome);
        Assert.True(pair.BackupMemory.Matches(old), "the backup's memory changed");
        Assert.True(pair.BackupVm.Running);
        connection.Dispose();
        return stats.Error!;
    }

    [UcxFact]
    public void An_announcement_at_the_wrong_ring_position_is_refused() =>
        Assert.Contains("one-sided frame at ring position 4096, expected 0", Attack(4096, 100, UcxSettings.OverTcpOneSided));

    [UcxFact]
    public void An_announcement_larger_than_the_ring_allows_is_refused() =>
        Assert.Contains("does not fit the ring", Attack(0, 1UL << 40, UcxSettings.OverTcpOneSided));

    [UcxFact]
    public void An_announcement_of_bytes_that_are_no_frame_is_refused() =>
        Assert.Contains("bad frame", Attack(0, 64, UcxSettings.OverTcpOneSided));

    [Fact]
    public void An_announcement_over_tcp_is_refused() =>
        Assert.Contains("a one-sided frame on a connection without a ring", Attack(0, 64, null));
}
