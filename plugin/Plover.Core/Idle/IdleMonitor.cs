using System.Runtime.InteropServices;
using Plover.Config;
using Plover.Platform;

namespace Plover.Idle;

/// <summary>
/// Runs an <see cref="IdleDetector"/> on its own thread, sampling every IdleWindowUs (nanosleep: Thread.Sleep has
/// millisecond granularity), and calls onTrigger when a SYNC should be proposed. After a trigger it pauses until
/// <see cref="EpochStarted"/> (the sync is in flight; proposing again would only queue duplicates).
/// </summary>
public sealed partial class IdleMonitor : IDisposable
{
    private readonly IdleDetector _detector;
    private readonly Action<SyncTrigger> _onTrigger;
    private readonly SyncConfig _config;
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _armed = new(true);
    private volatile bool _stop;

    public IdleMonitor(SyncConfig config, ReadOnlySpan<int> vcpuThreadIds, Action<SyncTrigger> onTrigger, ICpuTimeSource? cpu = null)
    {
        _config = config;
        _detector = new IdleDetector(config, cpu ?? new SchedstatCpuTime(), StopwatchClock.Instance);
        _detector.SetThreads(vcpuThreadIds);
        _onTrigger = onTrigger;
        _thread = ThreadScheduling.Start(Loop, "plover-idle", ThreadScheduling.Priority.High);
        _thread.Start();
    }

    /// <summary>Any thread: the guest's output waits in the open epoch (see <see cref="IdleDetector.OutputHeld"/>).</summary>
    public void OutputHeld() => _detector.OutputHeld();

    /// <summary>The VM resumed after a sync: start a new epoch and sample again.</summary>
    public void EpochStarted()
    {
        lock (_detector) _detector.EpochStarted();
        _armed.Set();
    }

    private void Loop()
    {
        long ns = _config.IdleWindowUs * 1000L;
        var sleep = new Timespec { Seconds = ns / 1_000_000_000, Nanoseconds = ns % 1_000_000_000 };
        while (!_stop)
        {
            _armed.Wait();
            if (_stop) break;
            nanosleep(in sleep, IntPtr.Zero);
            SyncTrigger trigger;
            lock (_detector) trigger = _detector.Sample();
            if (trigger == SyncTrigger.None) continue;
            _armed.Reset();
            _onTrigger(trigger);
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int nanosleep(in Timespec request, IntPtr remaining);

    public void Dispose()
    {
        _stop = true;
        _armed.Set();
        _thread.Join();
    }
}
