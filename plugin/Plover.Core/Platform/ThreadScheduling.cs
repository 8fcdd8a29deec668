using System.Runtime.InteropServices;

namespace Plover.Platform;

/// <summary>
/// Latency-critical library threads share the host with the guest's vCPU threads, which run flat out under load
/// (under TCG every vCPU is a busy host thread). A heartbeat that waits behind them for tens of milliseconds looks
/// like a dead leader, and a nice value does not prevent that: Linux shares CPU between sessions and cgroups first
/// (autogroup), and only then by nice inside each, so a waking thread of a busy QEMU waited 20-90 ms here.
/// <list type="bullet">
/// <item><see cref="Priority.Realtime"/>: SCHED_RR at a low real-time priority, ahead of every ordinary thread
///   whatever its group. For the threads on the heartbeat and commit path, which sleep almost all the time and
///   run for microseconds (the kernel's real-time throttling still caps a runaway at 95% of a core).</item>
/// <item><see cref="Priority.High"/>: nice -10, for threads that can be busy for a while (the sync engine, the
///   idle sampler) and must not starve the guest or QEMU's main loop.</item>
/// </list>
/// Both need CAP_SYS_NICE; without it the thread runs at normal priority and that is reported once.
/// </summary>
public static partial class ThreadScheduling
{
    public enum Priority { Normal, High, Realtime }

    public const int HighNice = -10;
    public const int RealtimePriority = 10;

    private const int PRIO_PROCESS = 0;
    private const int SCHED_RR = 2;
    private static int s_reported;

    [StructLayout(LayoutKind.Sequential)]
    private struct SchedParam { public int Priority; }

    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    private static partial int SetPriority(int which, uint who, int prio);

    [LibraryImport("libc", EntryPoint = "sched_setscheduler", SetLastError = true)]
    private static partial int SchedSetScheduler(int pid, int policy, in SchedParam param);

    /// <summary>Raises the calling thread (pid/who 0 = the calling thread on Linux); false, reported through log
    /// once per process, if the system refuses.</summary>
    public static bool RaiseCurrentThread(Priority priority, Action<string>? log = null)
    {
        if (priority == Priority.Normal || !OperatingSystem.IsLinux()) return false;
        if (priority == Priority.Realtime && SchedSetScheduler(0, SCHED_RR, new SchedParam { Priority = RealtimePriority }) == 0)
            return true;
        int rtErrno = priority == Priority.Realtime ? Marshal.GetLastPInvokeError() : 0;
        if (SetPriority(PRIO_PROCESS, 0, HighNice) == 0 && priority == Priority.High) return true;
        int errno = Marshal.GetLastPInvokeError();
        if (Interlocked.Exchange(ref s_reported, 1) == 0)
            log?.Invoke($"cannot raise the priority of latency-critical threads (sched_setscheduler errno {rtErrno}, " +
                        $"setpriority errno {errno}; needs CAP_SYS_NICE): heartbeats may be late while the guest keeps every core busy");
        return false;
    }

    /// <summary>A background thread that raises itself before running body.</summary>
    public static Thread Start(ThreadStart body, string name, Priority priority, Action<string>? log = null)
    {
        var t = new Thread(() =>
        {
            RaiseCurrentThread(priority, log);
            body();
        }) { IsBackground = true, Name = name };
        return t;
    }
}
