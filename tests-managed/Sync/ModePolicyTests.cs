using Plover.Sync;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>Adaptive mode's decision alone: syncs' costs in, the wanted mode out.</summary>
public sealed class ModePolicyTests
{
    private static readonly AdaptiveOptions Small = new() { Window = 4, SwitchAbove = 1.0, ProbeEvery = 3, MaxProbeEvery = 12 };

    [Fact]
    public void No_decision_before_a_full_window()
    {
        var p = new ModePolicy(Small, checkpoint: false);
        for (int i = 0; i < 3; i++) p.Replicated(10_000, 1_000);
        Assert.False(p.Wanted);
        Assert.Equal(0, p.LastRatio);
        p.Replicated(10_000, 1_000);
        Assert.True(p.Wanted);
        Assert.Equal(10.0, p.LastRatio);
        Assert.Contains("40000 bytes over the last 4 syncs", p.Reason);
    }

    [Fact]
    public void Replication_that_pays_stays()
    {
        var p = new ModePolicy(Small, checkpoint: false);
        for (int i = 0; i < 20; i++) p.Replicated(1_000, 5_000);
        Assert.False(p.Wanted);
        Assert.Equal(0.2, p.LastRatio, 6);
    }

    [Fact]
    public void The_window_is_a_sum_not_the_last_sync()
    {
        // One expensive sync among cheap ones: 3 x 100 + 9000 = 9300 against 4 x 2500 = 10000: still pays.
        var p = new ModePolicy(Small, checkpoint: false);
        p.Replicated(100, 2_500); p.Replicated(100, 2_500); p.Replicated(100, 2_500);
        p.Replicated(9_000, 2_500);
        Assert.False(p.Wanted);
        // The window slides: the next expensive one tips it (100 + 100 + 9000 + 9000 > 10000).
        p.Replicated(9_000, 2_500);
        Assert.True(p.Wanted);
    }

    [Fact]
    public void The_threshold_is_a_ratio_above_which_it_switches()
    {
        var p = new ModePolicy(Small with { SwitchAbove = 2.0 }, checkpoint: false);
        for (int i = 0; i < 4; i++) p.Replicated(1_900, 1_000);
        Assert.False(p.Wanted);
        for (int i = 0; i < 4; i++) p.Replicated(2_100, 1_000);
        Assert.True(p.Wanted);
    }

    [Fact]
    public void A_wish_not_yet_committed_is_withdrawn_when_replication_pays_again()
    {
        var p = new ModePolicy(Small, checkpoint: false);
        for (int i = 0; i < 4; i++) p.Replicated(2_000, 1_000);
        Assert.True(p.Wanted);
        for (int i = 0; i < 4; i++) p.Replicated(100, 1_000);
        Assert.False(p.Wanted);
    }

    [Fact]
    public void A_committed_switch_starts_the_window_over()
    {
        var p = new ModePolicy(Small, checkpoint: false);
        for (int i = 0; i < 4; i++) p.Replicated(2_000, 1_000);
        p.ModeChanged(checkpoint: true);
        Assert.True(p.Checkpoint);
        Assert.True(p.Wanted);
        Assert.Equal(0, p.LastRatio);
        // Reports of replicated syncs in checkpoint mode (the switch's own sync ran in the old mode) are ignored.
        p.Replicated(1, 1_000_000);
        Assert.True(p.Wanted);
    }

    [Fact]
    public void Checkpointing_tries_replication_every_probe_interval()
    {
        var p = new ModePolicy(Small, checkpoint: true);
        p.Checkpointed(); p.Checkpointed();
        Assert.True(p.Wanted);
        p.Checkpointed();
        Assert.False(p.Wanted);
        Assert.Contains("trial of replication after 3 checkpoints", p.Reason);
        p.ModeChanged(checkpoint: false);
        Assert.True(p.InTrial);
    }

    [Fact]
    public void A_failed_trial_doubles_the_wait_up_to_the_cap_and_a_good_one_resets_it()
    {
        var p = new ModePolicy(Small, checkpoint: true);
        int[] expected = [6, 12, 12];
        foreach (int next in expected)
        {
            while (p.Wanted) p.Checkpointed();
            p.ModeChanged(checkpoint: false);          // the trial
            for (int i = 0; i < 4; i++) p.Replicated(5_000, 1_000);
            Assert.True(p.Wanted);                     // it failed
            p.ModeChanged(checkpoint: true);
            Assert.Equal(next, p.ProbeEvery);
        }
        int waited = 0;
        while (p.Wanted) { p.Checkpointed(); waited++; }
        Assert.Equal(12, waited);
        p.ModeChanged(checkpoint: false);
        for (int i = 0; i < 4; i++) p.Replicated(500, 1_000);   // this trial pays
        Assert.False(p.Wanted);
        Assert.False(p.InTrial);
        Assert.Equal(3, p.ProbeEvery);
    }

    [Fact]
    public void Checkpoint_reports_while_replicating_are_ignored()
    {
        var p = new ModePolicy(Small, checkpoint: false);
        for (int i = 0; i < 100; i++) p.Checkpointed();
        Assert.False(p.Wanted);
    }

    [Fact]
    public void Nothing_dirtied_and_nothing_sent_is_no_reason_to_switch()
    {
        var p = new ModePolicy(Small, checkpoint: false);
        for (int i = 0; i < 4; i++) p.Replicated(0, 0);
        Assert.False(p.Wanted);
        // Bytes sent where a checkpoint would have sent none: replication costs more.
        for (int i = 0; i < 4; i++) p.Replicated(10, 0);
        Assert.True(p.Wanted);
    }

    [Theory]
    [InlineData(0, 1.0, 1, 1)]
    [InlineData(4, 0.0, 1, 1)]
    [InlineData(4, double.NaN, 1, 1)]
    [InlineData(4, 1.0, 0, 1)]
    [InlineData(4, 1.0, 8, 4)]
    public void Bad_options_are_refused(int window, double above, int probe, int maxProbe) =>
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            new ModePolicy(new AdaptiveOptions { Window = window, SwitchAbove = above, ProbeEvery = probe, MaxProbeEvery = maxProbe }, false));

    [Fact]
    public void Steady_state_allocates_nothing()
    {
        var p = new ModePolicy(Small with { Window = 16 }, checkpoint: false);
        for (int i = 0; i < 32; i++) p.Replicated(100, 1_000);
        // the least of three rounds: the runtime's one-time work (tiering a method up mid-loop) can land in one round
        // (3,296 bytes seen once in a full run); an allocation per call shows in every round
        long least = long.MaxValue;
        for (int round = 0; round < 3; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 10_000; i++) p.Replicated(100 + i % 7, 1_000);
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.Equal(0, least);
    }
}
