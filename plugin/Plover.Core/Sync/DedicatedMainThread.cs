using System.Collections.Concurrent;

namespace Plover.Sync;

/// <summary>A stand-in for QEMU's main loop (tests, benchmarks): one thread running posted actions in order.</summary>
public sealed class DedicatedMainThread : IMainThread, IDisposable
{
    private readonly BlockingCollection<Action> _queue = new();
    private readonly Thread _thread;

    public DedicatedMainThread(string name = "main")
    {
        _thread = new Thread(() =>
        {
            foreach (var action in _queue.GetConsumingEnumerable()) action();
        }) { IsBackground = true, Name = name };
        _thread.Start();
    }

    public bool IsCurrent => Thread.CurrentThread == _thread;

    public void Post(Action action, Action? cannotRun = null)
    {
        try { _queue.Add(action); }
        catch (InvalidOperationException) { cannotRun?.Invoke(); }   // disposed: nothing runs any more
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        _thread.Join();
    }
}
