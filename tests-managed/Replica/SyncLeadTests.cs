using System.Diagnostics;
using Plover.Node;
using Plover.Sync;
using Plover.Tests.Transport;
using Xunit;

namespace Plover.Tests.Replica;

/// <summary>What a sync record says about how its epoch reached the cut (the one-client breakdown of bench e2e).</summary>
public sealed class SyncLeadTests
{
    [Fact]
    public void Stamps_of_the_open_epoch_read_as_time_before_the_stop_and_older_ones_as_none()
    {
        var clock = new SyncLeadClock();
        clock.InputArrived();
        clock.InputCommitted();
        Thread.Sleep(5);
        long firstStop = Stopwatch.GetTimestamp();
        SyncLead first = clock.Take(firstStop);
        Assert.True(first.InputArrived >= first.InputCommitted && first.InputCommitted >= 5000, first.ToString());
        Assert.Equal(-1, first.OutputHeld);   // never stamped

        clock.InputInjected();
        clock.OutputHeld();
        SyncLead second = clock.Take(Stopwatch.GetTimestamp());
        Assert.Equal(-1, second.InputArrived);   // stamped in the epoch the first stop closed
        Assert.Equal(-1, second.InputCommitted);
        Assert.True(second.InputInjected >= second.OutputHeld && second.OutputHeld >= 0, second.ToString());
    }

    [Fact]
    public void A_replicas_sync_records_the_epochs_last_input_output_and_proposal_in_order()
    {
        using var c = new ReplicaCluster();
        ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 1, 3);
        Assert.True(TransportTestKit.WaitUntil(() => c.BackupHost.InjectedSnapshot().Length == 3 && c.PrimaryHost.Nic.Held == 3, 20000), c.Log.ToString());
        c.SyncNow();

        SyncLead p;
        lock (c.PrimarySyncs) p = c.PrimarySyncs[^1].Lead;
        Assert.True(p.InputArrived >= p.InputCommitted && p.InputCommitted >= p.InputInjected && p.InputInjected >= p.OutputHeld
                    && p.OutputHeld >= p.SyncProposed && p.SyncProposed >= 0, p.ToString());
        Assert.Equal(-1, p.IdleTriggered);   // asked for, not idle
        SyncLead b;
        lock (c.BackupSyncs) b = c.BackupSyncs[^1].Lead;
        Assert.True(b.InputInjected >= 0 && b.InputArrived == -1 && b.SyncProposed == -1, b.ToString());
    }
}
