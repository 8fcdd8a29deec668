using System.Runtime.InteropServices;

namespace Plover.Node;

/// <summary>
/// Lets the consensus thread sleep until a deadline with microsecond precision (ppoll on an eventfd, with the
/// thread's timer slack cut to 1 us) and lets other threads wake it early. The wake costs a syscall only when
/// the thread is actually asleep: the sleeper announces itself (<see cref="PrepareToSleep"/>) and re-checks its
/// queues before sleeping; a producer enqueues first and then checks the flag (both with full fences), so a
/// wake-up is never lost. Linux only.
/// </summary>
internal sealed unsafe partial class ConsensusWakeup : IDisposable
{
    private const int EFD_NONBLOCK = 0x800;
    private const int EFD_CLOEXEC = 0x80000;
    private const short POLLIN = 1;
    private const int PR_SET_TIMERSLACK = 29;

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd { public int Fd; public short Events; public short REvents; }

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec { public long Sec; public long Nsec; }

    [LibraryImport("libc", EntryPoint = "eventfd", SetLastError = true)]
    private static partial int EventFd(uint initval, int flags);

    [LibraryImport("libc", EntryPoint = "ppoll", SetLastError = true)]
    private static partial int PPoll(PollFd* fds, nuint nfds, Timespec* timeout, void* sigmask);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static partial nint Read(int fd, void* buf, nint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint Write(int fd, void* buf, nint count);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "prctl")]
    private static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    private readonly int _fd;
    private int _sleeping;

    public ConsensusWakeup()
    {
        _fd = EventFd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (_fd < 0) throw new IOException($"eventfd failed (errno {Marshal.GetLastPInvokeError()})");
    }

    /// <summary>Call on the sleeping thread once: its timed waits then end within about a microsecond of the deadline.</summary>
    public static void UsePreciseTimers() => Prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0);

    /// <summary>Announces the intent to sleep; the caller must re-check its queues afterwards, then Sleep or CancelSleep.</summary>
    public void PrepareToSleep() => Interlocked.Exchange(ref _sleeping, 1);

    public void CancelSleep() => Volatile.Write(ref _sleeping, 0);

    /// <summary>Sleeps up to nanos unless woken; clears the wake-up.</summary>
    public void Sleep(long nanos)
    {
        var pfd = new PollFd { Fd = _fd, Events = POLLIN };
        var ts = new Timespec { Sec = nanos / 1_000_000_000, Nsec = nanos % 1_000_000_000 };
        PPoll(&pfd, 1, &ts, null);
        Volatile.Write(ref _sleeping, 0);
        ulong value;
        Read(_fd, &value, 8);   // non-blocking: clears a pending wake-up, if any
    }

    /// <summary>Wakes the thread if it is (about to be) asleep. Any thread.</summary>
    public void Wake()
    {
        Interlocked.MemoryBarrier();   // orders the caller's enqueue before the read of the flag (Dekker)
        if (Volatile.Read(ref _sleeping) == 0 || Interlocked.CompareExchange(ref _sleeping, 0, 1) != 1) return;
        ulong one = 1;
        Write(_fd, &one, 8);
    }

    public void Dispose() => Close(_fd);
}
