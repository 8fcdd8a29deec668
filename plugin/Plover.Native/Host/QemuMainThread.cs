using Plover.Sync;

namespace Plover.Native.Host;

/// <summary>
/// IMainThread over the dispatcher (schedule_main + GCHandle trampoline). Post never waits. An action that throws on
/// the main thread is logged (the engine's own actions catch and report their errors themselves).
/// An action that can no longer run there (the dispatcher was closed at shutdown, or schedule_main failed) never runs
/// anywhere else (it would touch main-thread state from another thread): its cannotRun runs instead, on the thread
/// that observes the failure, so that a waiter (MainThreadExtensions.Invoke) gets an error instead of waiting forever
/// and QEMU can shut down.
/// </summary>
internal sealed class QemuMainThread(MainThreadDispatcher dispatcher, QemuHost host) : IMainThread
{
    private readonly Dictionary<Action, MainThreadDispatcher.Recurring> _recurring = new();

    /// <summary>One item per recurring action, kept (no task, closure or handle per post).</summary>
    public void PostRecurring(Action action)
    {
        MainThreadDispatcher.Recurring? work;
        lock (_recurring)
            if (!_recurring.TryGetValue(action, out work)) _recurring[action] = work = dispatcher.CreateRecurring(action);
        dispatcher.Schedule(work);
    }

    public void Post(Action action, Action? cannotRun = null)
    {
        bool ran = false;
        dispatcher.RunOnMainAsync(() =>
        {
            ran = true;
            action();
        }).ContinueWith(t =>
        {
            Exception? e = t.Exception?.GetBaseException();
            if (!Volatile.Read(ref ran))
            {
                try { cannotRun?.Invoke(); }
                catch (Exception c) { host.Error($"main-thread action could not run, and its fallback failed: {c.Message}"); }
            }
            else if (e is not null)
                host.Error($"main-thread action failed: {e.GetType().Name}: {e.Message}");
        }, TaskContinuationOptions.NotOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously);
    }
}
