using System.Runtime.InteropServices;
using Plover.Platform;
using static Plover.Transport.Ucx.UcxNative;

namespace Plover.Transport.Ucx;

/// <summary>
/// One UCX context and worker (thread mode multi: any thread may post sends and take received data), with a
/// progress thread that either sleeps on the worker's event fd or busy-polls (<see cref="UcxProgress"/>). Threads
/// that wait for a completion or for data wait on <see cref="WaitForProgress"/>, which the progress thread wakes
/// after every round that did something. On RDMA hardware UCX picks verbs (RC/UD/DC) by itself; UCX_TLS narrows it.
/// </summary>
public sealed unsafe partial class UcxWorker : IDisposable
{
    private readonly nint _context;
    private readonly nint _worker;
    private readonly int _efd = -1;
    private readonly Thread _thread;
    private readonly object _gate = new();
    private readonly Action<string> _log;
    private long _generation;
    private int _waiters;
    private volatile bool _disposed;

    public UcxWorker(UcxSettings settings, string name, Action<string>? log = null)
    {
        _log = log ?? (_ => { });
        Settings = settings;
        Progress = settings.Progress;
        UcxSignals.KeepRuntimeHandlers();
        nint config;
        try
        {
            Check(ucp_config_read(null, null, out config), "config read");
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            throw new IOException($"UCX is not installed (libucp.so.0, Debian package libucx0): {e.Message}", e);
        }
        try
        {
            // The worker's lock (thread mode multi) is a spinlock unless UCX is told otherwise. Our threads that call
            // into the worker run SCHED_RR (progress, consensus, writers), the readers and callers do not: an RR thread
            // that spins on the lock while its holder waits preempted on the same core keeps that core until the RR
            // timeslice (100 ms) or real-time throttling (950 ms of every second) ends. That was the stall of the
            // ping-pong between two processes (round trips of 0.1 and 0.95-1 s). A mutex lets the holder run.
            if (!settings.Variables.ContainsKey("UCX_USE_MT_MUTEX") && !settings.Variables.ContainsKey("USE_MT_MUTEX"))
                Check(ucp_config_modify(config, "USE_MT_MUTEX", "y"), "config USE_MT_MUTEX");
            foreach (var (key, value) in settings.Variables)
            {
                string name2 = key.StartsWith("UCX_", StringComparison.Ordinal) ? key[4..] : key;
                int status = ucp_config_modify(config, name2, value);
                if (status != UCS_OK) throw new IOException($"UCX setting {key}={value} refused: {Describe(status)}");
            }
            byte* p = stackalloc byte[ParamsBytes];
            new Span<byte>(p, ParamsBytes).Clear();
            *(ulong*)p = UCP_PARAM_FIELD_FEATURES;
            *(ulong*)(p + 8) = UCP_FEATURE_STREAM | UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP;
            Check(ucp_init_version(ApiMajor, ApiMinor, p, config, out _context), "init");
        }
        finally
        {
            ucp_config_release(config);
        }
        byte* w = stackalloc byte[ParamsBytes];
        new Span<byte>(w, ParamsBytes).Clear();
        *(ulong*)w = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
        *(int*)(w + 8) = UCS_THREAD_MODE_MULTI;
        int created = ucp_worker_create(_context, w, out _worker);
        if (created != UCS_OK)
        {
            ucp_cleanup(_context);
            Check(created, "worker create");
        }
        if (Progress == UcxProgress.Event)
        {
            int got = ucp_worker_get_efd(_worker, out _efd);
            if (got != UCS_OK)
            {
                ucp_worker_destroy(_worker);
                ucp_cleanup(_context);
                Check(got, "worker event fd");
            }
        }
        _thread = ThreadScheduling.Start(Run, $"plover-ucx-{name}", ThreadScheduling.Priority.Realtime, _log);
        _thread.Start();
    }

    public UcxProgress Progress { get; }
    /// <summary>True once disposed: its context is gone, and with it every registration made on it.</summary>
    public bool IsDisposed => _disposed;
    public UcxSettings Settings { get; }
    internal nint Handle => _worker;
    internal nint Context => _context;

    /// <summary>This worker's address, for the peer's ucp_ep_create (sent over the authenticated bootstrap connection).</summary>
    public byte[] Address()
    {
        Check(ucp_worker_get_address(_worker, out nint address, out nuint length), "worker address");
        try { return new ReadOnlySpan<byte>((void*)address, (int)length).ToArray(); }
        finally { ucp_worker_release_address(_worker, address); }
    }

    /// <summary>The number of progress rounds that did something so far; pass it to <see cref="WaitForProgress"/>.</summary>
    public long Generation => Volatile.Read(ref _generation);

    /// <summary>Waits until a progress round after seen did something, or timeoutMs passed. Busy mode spins first.</summary>
    public void WaitForProgress(long seen, int timeoutMs)
    {
        if (Progress == UcxProgress.Busy)
        {
            for (int i = 0; i < 20_000; i++)
            {
                if (Volatile.Read(ref _generation) != seen) return;
                Thread.SpinWait(8);
            }
        }
        lock (_gate)
        {
            // Interlocked (a full fence): the store must be visible before the generation is read, or Wake (which
            // increments the generation, then reads _waiters) and this wait can each miss the other's write.
            Interlocked.Increment(ref _waiters);
            try
            {
                if (Volatile.Read(ref _generation) == seen && !_disposed) Monitor.Wait(_gate, timeoutMs);
            }
            finally { Interlocked.Decrement(ref _waiters); }
        }
    }

    /// <summary>Progresses the worker on the calling thread (allowed: thread mode multi); true if it did something. A
    /// waiting thread calls it before it sleeps: some completions (UCX's emulated puts and flushes over TCP) need
    /// a progress call without any event on the worker's fd to wake the progress thread.</summary>
    public bool ProgressHere()
    {
        if (_disposed || ucp_worker_progress(_worker) == 0) return false;
        Wake();
        return true;
    }

    /// <summary>Wakes the progress thread (after a send was posted from another thread, so it gets pushed out).</summary>
    public void Signal()
    {
        if (Progress == UcxProgress.Event && !_disposed) ucp_worker_signal(_worker);
    }

    private void Run()
    {
        var fds = stackalloc PollFd[1];
        while (!_disposed)
        {
            if (ucp_worker_progress(_worker) != 0)
            {
                while (ucp_worker_progress(_worker) != 0) { }
                Wake();
                continue;
            }
            if (Progress == UcxProgress.Busy) continue;
            int armed = ucp_worker_arm(_worker);
            if (armed == UCS_ERR_BUSY) continue;   // events arrived meanwhile: progress again
            if (armed != UCS_OK) { _log($"ucx: worker arm failed: {Describe(armed)}"); Thread.Sleep(1); continue; }
            fds[0] = new PollFd { Fd = _efd, Events = 1 };
            if (poll(fds, 1, 100) > 0)
            {
                // The fd fired: progress, and wake the waiters even if progress counted nothing (stream data that
                // arrived counts as no event, and a reader must not sleep out its timeout over it).
                while (ucp_worker_progress(_worker) != 0) { }
                Wake();
            }
        }
        Wake();
    }

    private void Wake()
    {
        Interlocked.Increment(ref _generation);
        if (Volatile.Read(ref _waiters) == 0) return;
        lock (_gate) Monitor.PulseAll(_gate);
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd { public int Fd; public short Events; public short Revents; }

    [LibraryImport("libc")]
    private static partial int poll(PollFd* fds, nuint count, int timeoutMs);

    /// <summary>Stops the progress thread and frees the worker: every stream on it must be closed first.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (Progress == UcxProgress.Event) ucp_worker_signal(_worker);
        _thread.Join(TimeSpan.FromSeconds(2));
        ucp_worker_destroy(_worker);
        ucp_cleanup(_context);
    }
}
