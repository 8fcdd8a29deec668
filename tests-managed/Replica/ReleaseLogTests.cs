using Plover.Node;
using Xunit;

namespace Plover.Tests.Replica;

public sealed class ReleaseLogTests
{
    [Fact]
    public void Each_term_keeps_its_frames_and_the_first_and_last_release_time()
    {
        var log = new ReleaseLog();
        log.Record(2, 5, 1_000);
        log.Record(1, 3, 500);
        log.Record(2, 1, 900);    // out of order (a sync's own release time)
        log.Record(2, 4, 1_500);
        log.Record(3, 0, 9_999);  // nothing released: no window
        Assert.Equal([new ReleaseLog.Window(1, 3, 500, 500), new ReleaseLog.Window(2, 10, 900, 1_500)], log.Windows());
    }

    [Fact]
    public void A_replica_records_when_a_sync_released_its_output()
    {
        using var c = new ReplicaCluster();
        ReplicaCluster.Arrive(c.PrimaryHost, c.Primary, 1, 10);
        Assert.True(Plover.Tests.Transport.TransportTestKit.WaitUntil(() => c.BackupHost.InjectedSnapshot().Length == 10, 20000), c.Log.ToString());
        long before = ReleaseLog.NowUnixUs();
        c.SyncNow();
        var w = Assert.Single(c.Primary.ReleaseWindows);
        Assert.Equal(10, w.Frames);
        Assert.InRange(w.FirstUnixUs, before, ReleaseLog.NowUnixUs());
        Assert.Empty(c.Backup.ReleaseWindows);
    }
}
