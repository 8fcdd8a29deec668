namespace Plover.Sync;

/// <summary>
/// Runs work on the host's main thread (QEMU: schedule_main, a one-shot bottom half). Post may be called from
/// any thread and must not wait for the action. The engine posts only short actions (VM control, output guard
/// calls, ram_updated) and waits for them on its own thread, so QEMU's main loop is never blocked by the network.
/// </summary>
public interface IMainThread
{
    /// <summary>Queues action for the main thread. If it can never run there (the host is shutting down), cannotRun
    /// runs instead, on whichever thread learns it; action itself never runs anywhere but on the main thread.</summary>
    void Post(Action action, Action? cannotRun = null);

    /// <summary>
    /// Queues action, one instance the caller posts again and again (the replica's drain of committed entries), so
    /// that a host may keep one queued item for it instead of allocating one per post: a post while it is still
    /// queued may then add nothing, and it counts as not queued from just before it runs (a post from inside it, or
    /// during it, queues it again). Once the host shuts down it no longer runs.
    /// </summary>
    void PostRecurring(Action action) => Post(action);
}

public static class MainThreadExtensions
{
    /// <summary>Runs action on the main thread and blocks the calling (library) thread until it finished;
    /// rethrows its exception. Never call this on the main thread itself.</summary>
    public static void Invoke(this IMainThread main, Action action)
    {
        using var done = new ManualResetEventSlim();
        Exception? error = null;
        main.Post(() =>
        {
            try { action(); }
            catch (Exception e) { error = e; }
            finally { done.Set(); }
        }, () =>
        {
            error = new InvalidOperationException("the main thread runs no more work (shutting down)");
            done.Set();
        });
        done.Wait();
        if (error is not null) throw new SyncHostException(error.Message, error);
    }
}

/// <summary>A host call failed (VM control, device state): the sync cannot go on.</summary>
public sealed class SyncHostException(string message, Exception inner) : Exception(message, inner);
