using System.Diagnostics;
using Plover.Config;
using Plover.Idle;
using Xunit;

namespace Plover.Tests.Idle;

public class IdleDetectorTests
{
    private sealed class FakeClock : IMonotonicClock
    {
        public long NowNanoseconds { get; set; }
        public void AdvanceUs(long us) => NowNanoseconds += us * 1000;
    }

    private sealed class FakeCpu : ICpuTimeSource
    {
        public Dictionary<int, long> Ns { get; } = new();
        public bool TryRead(int threadId, out long nanoseconds) => Ns.TryGetValue(threadId, out nanoseconds);
        public void Run(int tid, long us) => Ns[tid] = Ns.GetValueOrDefault(tid) + us * 1000;
    }

    private static readonly SyncConfig Config = new(IdleWindowUs: 100, IdleThresholdUs: 25, IdleWindows: 3, MaxEpochMs: 200);

    private static (IdleDetector, FakeClock, FakeCpu) Make()
    {
        var clock = new FakeClock { NowNanoseconds = 1_000_000 };
        var cpu = new FakeCpu();
        cpu.Ns[10] = 0; cpu.Ns[11] = 0;
        var d = new IdleDetector(Config, cpu, clock);
        d.SetThreads([10, 11]);
        return (d, clock, cpu);
    }

    [Fact]
    public void ThreeIdleWindowsInARow_ProposeASync()
    {
        var (d, clock, cpu) = Make();
        Assert.Equal(SyncTrigger.None, d.Sample());          // primes the counters
        for (int i = 0; i < 2; i++)
        {
            clock.AdvanceUs(100); cpu.Run(10, 10); cpu.Run(11, 10);   // 20 us < 25 us: idle
            Assert.Equal(SyncTrigger.None, d.Sample());
        }
        clock.AdvanceUs(100); cpu.Run(10, 5);
        Assert.Equal(SyncTrigger.Idle, d.Sample());
        Assert.Equal(0, d.IdleWindows);
    }

    [Fact]
    public void OnceOutputIsHeld_OneIdleWindowProposesASync_UntilTheNextEpoch()
    {
        var (d, clock, cpu) = Make();
        d.Sample();
        clock.AdvanceUs(100); cpu.Run(10, 90);                          // the guest answers: busy
        d.OutputHeld();
        Assert.Equal(SyncTrigger.None, d.Sample());
        clock.AdvanceUs(100); cpu.Run(10, 5);                           // then waits for its clients: idle
        Assert.Equal(SyncTrigger.Idle, d.Sample());                    // one window, not three

        d.EpochStarted();                                               // no output held in the new epoch
        d.Sample();
        for (int i = 0; i < 2; i++)
        {
            clock.AdvanceUs(100); cpu.Run(10, 5);
            Assert.Equal(SyncTrigger.None, d.Sample());
        }
        clock.AdvanceUs(100); cpu.Run(10, 5);
        Assert.Equal(SyncTrigger.Idle, d.Sample());
    }

    [Fact]
    public void ABusyWindowResetsTheCount_SummedOverVcpus()
    {
        var (d, clock, cpu) = Make();
        d.Sample();
        clock.AdvanceUs(100); cpu.Run(10, 5);
        d.Sample();
        clock.AdvanceUs(100); cpu.Run(10, 5);
        d.Sample();
        Assert.Equal(2, d.IdleWindows);
        clock.AdvanceUs(100); cpu.Run(10, 15); cpu.Run(11, 15);          // 30 us together: busy
        Assert.Equal(SyncTrigger.None, d.Sample());
        Assert.Equal(0, d.IdleWindows);
        Assert.Equal(30_000, d.LastBusyNanoseconds);
    }

    [Fact]
    public void ALateSampleScalesTheThreshold()
    {
        var (d, clock, cpu) = Make();
        d.Sample();
        clock.AdvanceUs(400); cpu.Run(10, 80);                           // 80 us in 400 us: 20 per 100: idle
        d.Sample();
        Assert.Equal(1, d.IdleWindows);
    }

    [Fact]
    public void MaxEpoch_ProposesEvenWhenBusy_AndEpochStartedResets()
    {
        var (d, clock, cpu) = Make();
        d.Sample();
        for (int i = 0; i < 1999; i++)
        {
            clock.AdvanceUs(100); cpu.Run(10, 90);
            Assert.Equal(SyncTrigger.None, d.Sample());
        }
        clock.AdvanceUs(100); cpu.Run(10, 90);
        Assert.Equal(SyncTrigger.MaxEpoch, d.Sample());
        d.EpochStarted();
        clock.AdvanceUs(100); cpu.Run(10, 90);
        Assert.Equal(SyncTrigger.None, d.Sample());
    }

    [Fact]
    public void AVanishedThreadCountsAsIdle()
    {
        var (d, clock, cpu) = Make();
        d.Sample();
        cpu.Ns.Remove(11);
        for (int i = 0; i < 2; i++) { clock.AdvanceUs(100); d.Sample(); }
        clock.AdvanceUs(100);
        Assert.Equal(SyncTrigger.Idle, d.Sample());
    }

    [Fact]
    public void RealThread_BurningCpuIsBusy_ThenSleepingIsIdle()
    {
        int tid = 0;
        var burn = new ManualResetEventSlim(true);
        var stop = false;
        var started = new ManualResetEventSlim();
        var worker = new Thread(() =>
        {
            tid = GetTid();
            started.Set();
            while (!Volatile.Read(ref stop))
            {
                if (burn.IsSet) { var sw = Stopwatch.StartNew(); while (sw.ElapsedTicks < Stopwatch.Frequency / 1000) { } }
                else Thread.Sleep(5);
            }
        }) { IsBackground = true };
        worker.Start();
        started.Wait();
        Assert.True(File.Exists(SchedstatCpuTime.PathOf(tid)), "schedstat missing");

        using var cpu = new SchedstatCpuTime();
        // 2 ms windows, threshold 0.5 ms: a burning thread uses nearly all of it even on a loaded machine
        var config = new SyncConfig(IdleWindowUs: 2000, IdleThresholdUs: 500, IdleWindows: 3, MaxEpochMs: 60_000);
        var detector = new IdleDetector(config, cpu, StopwatchClock.Instance);
        detector.SetThreads([tid]);
        detector.Sample();
        // On a shared, loaded machine the burner is not always scheduled, so ask for busy windows, not all busy.
        long maxBusy = 0;
        int busyWindows = 0;
        for (int i = 0; i < 20; i++)
        {
            Thread.Sleep(2);
            detector.Sample();
            maxBusy = Math.Max(maxBusy, detector.LastBusyNanoseconds);
            if (detector.IdleWindows == 0) busyWindows++;
        }
        Assert.True(maxBusy > 500_000, $"burning thread used only {maxBusy} ns per window");
        Assert.True(busyWindows >= 5, $"only {busyWindows} of 20 windows were busy");

        burn.Reset();
        Thread.Sleep(20);
        detector.EpochStarted();
        detector.Sample();
        bool idle = false;
        for (int i = 0; i < 50 && !idle; i++)
        {
            Thread.Sleep(2);
            idle = detector.Sample() == SyncTrigger.Idle;
        }
        Volatile.Write(ref stop, true);
        worker.Join();
        Assert.True(idle, "a sleeping thread was never seen idle");
    }

    private static int GetTid() => Gettid();

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "gettid")]
    private static extern int Gettid();
}
