using Plover.Sync;

namespace Plover.Native.Host;

/// <summary>
/// IMainThread over the dispatcher (schedule_main + GCHandle trampoline). Post never waits. An action that throws
/// is logged (the engine's own actions catch and report their errors themselves). At shutdown the dispatcher
/// cancels what has not run: a library thread waiting for such an action is then left waiting (a background
/// thread of a process that is exiting).
/// </summary>
internal sealed class QemuMainThread(MainThreadDispatcher dispatcher, QemuHost host) : IMainThread
{
    public void Post(Action action) =>
        dispatcher.RunOnMainAsync(action).ContinueWith(t =>
        {
            if (t.Exception?.GetBaseException() is { } e and not OperationCanceledException)
                host.Error($"main-thread action failed: {e.GetType().Name}: {e.Message}");
        }, TaskContinuationOptions.NotOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously);
}
