using Plover.Config;
using Plover.Idle;
using Xunit;

namespace Plover.Tests.Idle;

public class IdleMonitorTests
{
    private sealed class ConstantCpu(long stepNs) : ICpuTimeSource
    {
        private long _ns;
        public bool TryRead(int threadId, out long nanoseconds)
        {
            nanoseconds = Interlocked.Add(ref _ns, stepNs);
            return true;
        }
    }

    [Fact]
    public void IdleVcpus_TriggerOnce_ThenWaitForTheNextEpoch()
    {
        var triggers = new List<SyncTrigger>();
        using var fired = new SemaphoreSlim(0);
        var config = new SyncConfig(IdleWindowUs: 200, IdleThresholdUs: 50, IdleWindows: 3, MaxEpochMs: 60_000);
        using var monitor = new IdleMonitor(config, [1], t => { lock (triggers) triggers.Add(t); fired.Release(); }, new ConstantCpu(0));
        Assert.True(fired.Wait(TimeSpan.FromSeconds(5)));
        Thread.Sleep(20);
        lock (triggers) Assert.Equal([SyncTrigger.Idle], triggers);   // paused until the sync resumed the VM
        monitor.EpochStarted();
        Assert.True(fired.Wait(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public void BusyVcpus_TriggerAtTheMaximumEpochLength()
    {
        using var fired = new SemaphoreSlim(0);
        SyncTrigger seen = SyncTrigger.None;
        var config = new SyncConfig(IdleWindowUs: 200, IdleThresholdUs: 50, IdleWindows: 3, MaxEpochMs: 30);
        // every read adds 10 ms of CPU: always busy
        using var monitor = new IdleMonitor(config, [1], t => { seen = t; fired.Release(); }, new ConstantCpu(10_000_000));
        Assert.True(fired.Wait(TimeSpan.FromSeconds(5)));
        Assert.Equal(SyncTrigger.MaxEpoch, seen);
    }
}
