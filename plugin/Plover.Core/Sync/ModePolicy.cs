namespace Plover.Sync;

/// <summary>
/// Adaptive mode's thresholds (<c>sync.mode: adaptive</c>, <c>sync.adaptive</c> in the config).
/// </summary>
public sealed record AdaptiveOptions
{
    /// <summary>Replicated syncs compared at a time (a full window is needed before any decision).</summary>
    public int Window { get; init; } = 16;
    /// <summary>Switch to checkpointing when, over the window, replication sent more than this many times the bytes
    /// checkpointing would have (1.0: as soon as it costs more).</summary>
    public double SwitchAbove { get; init; } = 1.0;
    /// <summary>Checkpoints before a trial of replication (checkpointing measures nothing about divergence, so the
    /// only way to learn whether replication pays again is to replicate for a window).</summary>
    public int ProbeEvery { get; init; } = 64;
    /// <summary>A trial that fails doubles the checkpoints before the next one, up to this many.</summary>
    public int MaxProbeEvery { get; init; } = 1024;
}

/// <summary>
/// Which mode the cluster should run in, from what the primary's completed syncs cost: a pure state machine (syncs in,
/// a wanted mode out; no clock, no threads, nothing allocated after construction). The replica core owns one and
/// feeds it; it proposes the wanted mode in the next SYNC entry, and only that committed entry changes the mode
/// (<see cref="ModeChanged"/>).
/// <list type="bullet">
/// <item>Replicating: each completed sync gives the bytes replication cost (the sync link's frames and the epoch's
///   INPUT entries, sent to two followers) and what checkpointing would have sent (every page the primary dirtied,
///   with its page number, plus the whole device state). Once a window of syncs has been seen, replication costing
///   more than <see cref="AdaptiveOptions.SwitchAbove"/> times checkpointing over the window wants checkpointing.</item>
/// <item>Checkpointing: after <see cref="AdaptiveOptions.ProbeEvery"/> checkpoints it wants replication for a trial
///   window. A trial that ends in a switch back doubles the wait for the next one (up to
///   <see cref="AdaptiveOptions.MaxProbeEvery"/>); a trial that stays resets it.</item>
/// </list>
/// </summary>
public sealed class ModePolicy
{
    private readonly AdaptiveOptions _options;
    private readonly long[] _replicate, _checkpoint;   // the window, a ring
    private int _count, _next;
    private long _checkpointsSinceSwitch;
    private int _probeEvery;
    private bool _trial;   // replicating because of a trial (a failure backs off)

    public ModePolicy(AdaptiveOptions options, bool checkpoint)
    {
        if (options.Window < 1) throw new ArgumentOutOfRangeException(nameof(options), "window must be at least 1");
        if (!(options.SwitchAbove > 0) || double.IsInfinity(options.SwitchAbove)) throw new ArgumentOutOfRangeException(nameof(options), "switchAbove must be positive");
        if (options.ProbeEvery < 1 || options.MaxProbeEvery < options.ProbeEvery)
            throw new ArgumentOutOfRangeException(nameof(options), "probeEvery must be at least 1 and at most maxProbeEvery");
        _options = options;
        _replicate = new long[options.Window];
        _checkpoint = new long[options.Window];
        _probeEvery = options.ProbeEvery;
        Checkpoint = Wanted = checkpoint;
    }

    /// <summary>The mode in effect (the log's).</summary>
    public bool Checkpoint { get; private set; }
    /// <summary>The mode the policy wants (equal to <see cref="Checkpoint"/>: no change).</summary>
    public bool Wanted { get; private set; }
    /// <summary>Replication bytes over checkpoint bytes of the last full window (0: none yet).</summary>
    public double LastRatio { get; private set; }
    /// <summary>Checkpoints a trial of replication waits for now.</summary>
    public int ProbeEvery => _probeEvery;
    /// <summary>Replicating for a trial window.</summary>
    public bool InTrial => _trial && !Checkpoint;
    /// <summary>Why it wants what it wants (for the replica's event list); set when <see cref="Wanted"/> changes.</summary>
    public string Reason { get; private set; } = "";

    /// <summary>A completed replicated sync (not a full one): what it cost and what a checkpoint would have.</summary>
    public void Replicated(long replicateBytes, long checkpointBytes)
    {
        if (Checkpoint) return;   // a sync run in the old mode after a switch was decided, or a stray report
        _replicate[_next] = Math.Max(0, replicateBytes);
        _checkpoint[_next] = Math.Max(0, checkpointBytes);
        _next = (_next + 1) % _replicate.Length;
        if (_count < _replicate.Length) _count++;
        if (_count < _replicate.Length) return;
        long rep = 0, cp = 0;
        for (int i = 0; i < _count; i++) { rep += _replicate[i]; cp += _checkpoint[i]; }
        LastRatio = cp == 0 ? (rep == 0 ? 0 : double.PositiveInfinity) : (double)rep / cp;
        bool costsMore = LastRatio > _options.SwitchAbove;
        if (costsMore && !Wanted)
        {
            Wanted = true;
            Reason = $"replication sent {rep} bytes over the last {_count} syncs, checkpointing would have sent {cp} " +
                     $"({LastRatio:0.00}x > {_options.SwitchAbove:0.##}x){(_trial ? $"; next trial after {Math.Min(_probeEvery * 2L, _options.MaxProbeEvery)} checkpoints" : "")}";
        }
        else if (!costsMore && Wanted)
        {
            Wanted = false;   // it paid again before the switch committed
            Reason = $"replication pays again ({LastRatio:0.00}x of checkpointing)";
        }
        if (!costsMore && _trial)
        {
            _trial = false;   // the trial stays: replication pays
            _probeEvery = _options.ProbeEvery;
        }
    }

    /// <summary>A completed checkpoint.</summary>
    public void Checkpointed()
    {
        if (!Checkpoint) return;
        _checkpointsSinceSwitch++;
        if (_checkpointsSinceSwitch >= _probeEvery && Wanted)
        {
            Wanted = false;
            Reason = $"trial of replication after {_checkpointsSinceSwitch} checkpoints";
        }
    }

    /// <summary>A committed SYNC entry switched the mode: measurements start over in it.</summary>
    public void ModeChanged(bool checkpoint)
    {
        if (checkpoint == Checkpoint) return;
        if (checkpoint && _trial) _probeEvery = (int)Math.Min(_probeEvery * 2L, _options.MaxProbeEvery);   // the trial failed
        _trial = !checkpoint && Checkpoint;   // leaving checkpointing is always a trial until a window says it pays
        Checkpoint = Wanted = checkpoint;
        _count = _next = 0;
        _checkpointsSinceSwitch = 0;
        LastRatio = 0;
    }
}
