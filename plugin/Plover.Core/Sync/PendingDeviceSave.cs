using System.Diagnostics;

namespace Plover.Sync;

/// <summary>
/// A device state save posted to the main thread at the stop, so that it runs while the sync thread exchanges
/// bitmaps and hashes (mostly waiting for the peer) instead of before it. The VM stays stopped until the save is
/// over: whoever starts it again (an early resume, the end of the sync, an abort) waits for it first. One instance
/// per engine, reused: nothing is allocated per sync.
/// </summary>
internal sealed class PendingDeviceSave : IDisposable
{
    private readonly IMainThread _main;
    private readonly Action _run;
    private readonly Action _cannotRun;
    private readonly ManualResetEventSlim _done = new(true);
    private Action? _save;
    private Exception? _error;
    private long _savedTicks;

    public PendingDeviceSave(IMainThread main)
    {
        _main = main;
        _run = Run;
        _cannotRun = () => Finish(new InvalidOperationException("the main thread runs no more work (shutting down)"));
    }

    /// <summary>True from <see cref="Post"/> until the save has been waited for.</summary>
    public bool Pending { get; private set; }

    /// <summary>Sync thread, VM stopped: queues save (a cached delegate) for the main thread.</summary>
    public void Post(Action save)
    {
        _save = save;
        _error = null;
        _done.Reset();
        Pending = true;
        _main.Post(_run, _cannotRun);
    }

    /// <summary>Sync thread: waits for the save; returns how long it ran on the main thread (us). Throws if it failed
    /// or did not finish within timeout.</summary>
    public double Wait(TimeSpan timeout)
    {
        if (!Pending) return 0;
        if (!_done.Wait(timeout))
            throw new SyncHostException("the device state save did not finish", new TimeoutException($"no save within {timeout.TotalSeconds:0} s"));
        Pending = false;
        if (_error is not null) throw new SyncHostException(_error.Message, _error);
        return Stopwatch.GetElapsedTime(0, Volatile.Read(ref _savedTicks)).TotalMicroseconds;
    }

    /// <summary>Sync thread, abort path: waits (bounded) so that the VM is not started under a running save.</summary>
    public void WaitQuietly(TimeSpan timeout)
    {
        if (Pending) _done.Wait(timeout);
        Pending = false;
    }

    private void Run()
    {
        long t = Stopwatch.GetTimestamp();
        try
        {
            _save!();
            Volatile.Write(ref _savedTicks, Stopwatch.GetTimestamp() - t);
            Finish(null);
        }
        catch (Exception e) { Finish(e); }
    }

    private void Finish(Exception? error)
    {
        _error = error;
        _done.Set();
    }

    public void Dispose() => _done.Dispose();
}
