using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Plover.Native.Host;

/// <summary>
/// Runs work on QEMU's main thread: schedule_main with a static trampoline and a GCHandle to the work item.
/// Library threads wait for the returned task; the main thread never waits on the library (continuations run
/// asynchronously, never inside the bottom half). Close() cancels what has not run yet, so a library thread
/// waiting for the main thread at shutdown is released; a bottom half that fires after that does nothing.
/// Work posted again and again (<see cref="Recurring"/>) keeps one item and one GCHandle for good, so scheduling it
/// allocates nothing.
/// </summary>
internal sealed unsafe class MainThreadDispatcher
{
    private readonly QemuHost _host;
    private readonly Lock _lock = new();
    private readonly HashSet<WorkItem> _pending = [];
    private bool _closed;

    public MainThreadDispatcher(QemuHost host) => _host = host;

    public Task RunOnMainAsync(Action action) => RunOnMainAsync(() =>
    {
        action();
        return true;
    });

    public Task<T> RunOnMainAsync<T>(Func<T> work) => Schedule(work).Task;

    /// <summary>Runs work on the main thread and waits for it (library threads only). On timeout the work is
    /// withdrawn if it has not started, so it never runs later behind the caller's back; if it has started, this
    /// waits for it to finish.</summary>
    public T RunOnMain<T>(Func<T> work, TimeSpan timeout)
    {
        if (_host.OnMainThread)
            throw new InvalidOperationException("RunOnMain called on the main thread: it would wait for itself");
        WorkItem<T> item = Schedule(work);
        var done = (IAsyncResult)item.Task;
        if (!done.AsyncWaitHandle.WaitOne(timeout)) // unlike Task.Wait, does not wrap the exception
        {
            if (Claim(item))
                throw new TimeoutException($"QEMU's main thread did not run the work within {timeout.TotalSeconds:0} s");
            done.AsyncWaitHandle.WaitOne(); // it is running on the main thread right now
        }
        return item.Task.GetAwaiter().GetResult();
    }

    private WorkItem<T> Schedule<T>(Func<T> work)
    {
        var item = new WorkItem<T>(this, work);
        lock (_lock)
        {
            if (_closed)
            {
                item.Fail(new OperationCanceledException("the library is shutting down"));
                return item;
            }
            _pending.Add(item);
        }
        nint handle = GCHandle.ToIntPtr(GCHandle.Alloc(item));
        try
        {
            int rc = _host.ScheduleMain(&Trampoline, (void*)handle);
            if (rc < 0)
                throw new InvalidOperationException($"schedule_main failed: {rc}");
        }
        catch (Exception e)
        {
            lock (_lock)
                _pending.Remove(item);
            GCHandle.FromIntPtr(handle).Free();
            item.Fail(e);
        }
        return item;
    }

    /// <summary>An action scheduled over and over (IMainThread.PostRecurring): queued at most once at a time.</summary>
    public Recurring CreateRecurring(Action action) => new(this, action);

    /// <summary>Queues recurring work unless it is queued already (nothing after Close).</summary>
    public void Schedule(Recurring work)
    {
        if (Volatile.Read(ref _closed) || Interlocked.Exchange(ref work.Queued, 1) == 1) return;
        int rc = _host.ScheduleMain(&RecurringTrampoline, (void*)work.Handle);
        if (rc < 0)
        {
            Volatile.Write(ref work.Queued, 0);
            _host.Error($"schedule_main failed: {rc}: a recurring main-thread action did not run");
        }
    }

    /// <summary>Refuses new work and cancels what is queued but has not started.</summary>
    public void Close()
    {
        WorkItem[] cancelled;
        lock (_lock)
        {
            _closed = true;
            cancelled = [.. _pending];
            _pending.Clear();
        }
        foreach (WorkItem item in cancelled)
            item.Cancel();
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void RecurringTrampoline(void* opaque)
    {
        var work = (Recurring)GCHandle.FromIntPtr((nint)opaque).Target!;
        Volatile.Write(ref work.Queued, 0);   // before it runs: a post meanwhile queues it again
        if (Volatile.Read(ref work.Owner._closed)) return;
        try { work.Action(); }
        catch (Exception e) { work.Owner._host.Error($"main-thread action failed: {e.GetType().Name}: {e.Message}"); }
    }

    // True when the item may run (it was still pending and nobody cancelled it).
    private bool Claim(WorkItem item)
    {
        lock (_lock)
            return _pending.Remove(item);
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Trampoline(void* opaque)
    {
        try
        {
            GCHandle handle = GCHandle.FromIntPtr((nint)opaque);
            var item = (WorkItem)handle.Target!;
            handle.Free();
            if (item.Owner.Claim(item))
                item.Run();
        }
        catch (Exception e)
        {
            // Run() catches the work's own exceptions; this is a bad opaque pointer or a broken item.
            Console.Error.WriteLine($"plover: main-thread trampoline failed: {e}");
        }
    }

    /// <summary>See <see cref="CreateRecurring"/>. Its handle is never freed: a bottom half may still hold it at shutdown.</summary>
    public sealed class Recurring
    {
        public readonly MainThreadDispatcher Owner;
        public readonly Action Action;
        public readonly nint Handle;
        public int Queued;

        public Recurring(MainThreadDispatcher owner, Action action)
        {
            Owner = owner;
            Action = action;
            Handle = GCHandle.ToIntPtr(GCHandle.Alloc(this));
        }
    }

    private abstract class WorkItem(MainThreadDispatcher owner)
    {
        public MainThreadDispatcher Owner { get; } = owner;
        public abstract void Run();
        public abstract void Cancel();
    }

    private sealed class WorkItem<T>(MainThreadDispatcher owner, Func<T> work) : WorkItem(owner)
    {
        private readonly TaskCompletionSource<T> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<T> Task => _done.Task;

        public override void Run()
        {
            try
            {
                _done.TrySetResult(work());
            }
            catch (Exception e)
            {
                _done.TrySetException(e);
            }
        }

        public override void Cancel() =>
            Fail(new OperationCanceledException("the library shut down before the main thread ran this"));

        public void Fail(Exception e) => _done.TrySetException(e);
    }
}
