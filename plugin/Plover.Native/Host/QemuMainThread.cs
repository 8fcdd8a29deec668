using Plover.Sync;

namespace Plover.Native.Host;

/// <summary>
/// IMainThread over the dispatcher (schedule_main + GCHandle trampoline). Post never waits. An action that throws on
/// the main thread is logged (the engine's own actions catch and report their errors themselves).
/// An action that can no longer run there (the dispatcher was closed at shutdown, or schedule_main failed) is run on
/// the thread that observes the failure instead: whoever waits for it (a sync engine thread in
/// MainThreadExtensions.Invoke) is then released, and every QEMU call inside it is refused by QemuHost because it
/// is off the main thread, so the waiter sees an error instead of waiting forever and QEMU can shut down.
/// </summary>
internal sealed class QemuMainThread(MainThreadDispatcher dispatcher, QemuHost host) : IMainThread
{
    public void Post(Action action)
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
                try { action(); }
                catch { /* refused host calls: expected at shutdown */ }
            }
            else if (e is not null)
                host.Error($"main-thread action failed: {e.GetType().Name}: {e.Message}");
        }, TaskContinuationOptions.NotOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously);
    }
}
