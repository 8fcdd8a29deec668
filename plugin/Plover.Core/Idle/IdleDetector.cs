using Plover.Config;

namespace Plover.Idle;

public enum SyncTrigger
{
    /// <summary>Keep running.</summary>
    None,
    /// <summary>The vCPUs were idle for IdleWindows consecutive windows: propose a SYNC now.</summary>
    Idle,
    /// <summary>The epoch reached MaxEpochMs: propose a SYNC now even though the guest is busy.</summary>
    MaxEpoch,
}

/// <summary>
/// Decides when to propose a SYNC (docs/architecture.md section 4): after <see cref="SyncConfig.IdleWindows"/> consecutive
/// windows (<see cref="SyncConfig.IdleWindowsWithOutput"/> once the guest's output waits for the sync) of <see cref="SyncConfig.IdleWindowUs"/> in which the vCPU threads together ran less than
/// <see cref="SyncConfig.IdleThresholdUs"/> (scaled to the actual window length when sampling ran late), or when
/// the epoch is <see cref="SyncConfig.MaxEpochMs"/> old. Unlike the original (process CPU time via clock(), which
/// counted the library's own busy pollers), only the vCPU threads are measured, with ns resolution.
/// Call <see cref="Sample"/> about every window; <see cref="EpochStarted"/> when a sync resumed the VM.
/// Not thread-safe (one sampling thread).
/// </summary>
public sealed class IdleDetector
{
    private readonly SyncConfig _config;
    private readonly ICpuTimeSource _cpu;
    private readonly IMonotonicClock _clock;
    private int[] _threads = [];
    private long[] _lastCpu = [];
    private long _lastSample;
    private long _epochStart;
    private int _idleWindows;
    private bool _primed;
    private volatile bool _outputHeld;

    public IdleDetector(SyncConfig config, ICpuTimeSource cpu, IMonotonicClock clock)
    {
        if (config.IdleWindowUs <= 0 || config.IdleThresholdUs < 0 || config.IdleWindows <= 0 || config.MaxEpochMs <= 0)
            throw new ArgumentException($"bad sync config {config}", nameof(config));
        _config = config;
        _cpu = cpu;
        _clock = clock;
        _epochStart = clock.NowNanoseconds;
    }

    /// <summary>Consecutive idle windows seen so far.</summary>
    public int IdleWindows => _idleWindows;
    /// <summary>vCPU time (ns) used in the last window.</summary>
    public long LastBusyNanoseconds { get; private set; }
    public long LastWindowNanoseconds { get; private set; }

    /// <summary>The vCPU threads to watch (PloverHostApi.vcpu_thread_ids).</summary>
    public void SetThreads(ReadOnlySpan<int> threadIds)
    {
        _threads = threadIds.ToArray();
        _lastCpu = new long[_threads.Length];
        _primed = false;
        _idleWindows = 0;
    }

    /// <summary>A new epoch began (the VM resumed after a sync): restart the epoch clock and the idle count.</summary>
    public void EpochStarted()
    {
        _outputHeld = false;
        _epochStart = _clock.NowNanoseconds;
        _idleWindows = 0;
        _primed = false;
    }

    /// <summary>Any thread: the guest's output is held in this epoch; from now on
    /// <see cref="SyncConfig.IdleWindowsWithOutput"/> idle windows suffice.</summary>
    public void OutputHeld() => _outputHeld = true;

    /// <summary>One sample: closes the window since the previous sample and says whether to propose a SYNC.</summary>
    public SyncTrigger Sample()
    {
        long now = _clock.NowNanoseconds;
        long busy = 0;
        for (int i = 0; i < _threads.Length; i++)
        {
            if (!_cpu.TryRead(_threads[i], out long cpu)) continue;   // a vanished thread counts as idle
            if (_primed) busy += Math.Max(0, cpu - _lastCpu[i]);
            _lastCpu[i] = cpu;
        }
        bool hadWindow = _primed;
        long window = now - _lastSample;
        _lastSample = now;
        _primed = true;

        if (hadWindow && window > 0)
        {
            LastBusyNanoseconds = busy;
            LastWindowNanoseconds = window;
            // Threshold per nominal window, scaled when the sampler woke up late (a long window is not "busier").
            double threshold = _config.IdleThresholdUs * 1000.0 * Math.Max(1.0, window / (_config.IdleWindowUs * 1000.0));
            _idleWindows = busy < threshold ? _idleWindows + 1 : 0;
        }

        if (_idleWindows >= (_outputHeld ? Math.Min(_config.IdleWindowsWithOutput, _config.IdleWindows) : _config.IdleWindows))
        {
            _idleWindows = 0;
            return SyncTrigger.Idle;
        }
        if (now - _epochStart >= _config.MaxEpochMs * 1_000_000L) return SyncTrigger.MaxEpoch;
        return SyncTrigger.None;
    }
}
