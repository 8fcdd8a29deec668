namespace Plover.Guard;

public enum GuardRole { Primary, Backup }

public enum GuardState
{
    /// <summary>Output is held by epoch (primary: until the backup acks; backup: until discarded).</summary>
    Holding,
    /// <summary>A primary without a backup (promoted after a failover, or by a ROLE decision): output leaves as soon
    /// as the guest sends it (<see cref="OutputGuard.ReleaseUnprotected"/>), still through this guard.</summary>
    Unprotected,
    /// <summary>Deposed: nothing is ever released again by this primary (one-way, until <see cref="OutputGuard.Demote"/>
    /// makes it a backup, which only discards).</summary>
    Fenced,
}

/// <summary>
/// The output guard: the outside world never sees output from a state the backup could not reproduce.
/// <list type="bullet">
/// <item>At every sync stop <see cref="CutEpoch"/> seals each NIC's open epoch and remembers it as part of sync e.</item>
/// <item>Primary: <see cref="EpochSynced"/>(e), called after the backup's ack of sync e and after vm_start, releases
///   every NIC's frames up to the epoch cut at e. Nothing else releases while holding.</item>
/// <item>Backup: <see cref="EpochSynced"/>(e), called once state e is applied, discards its own frames up to e (the
///   primary's copy of that output is the one the world sees).</item>
/// <item>A primary without a backup is <see cref="GuardState.Unprotected"/>: every frame the guest sends is released
///   at once (<see cref="ReleaseUnprotected"/>, on the host's notice that frames are held). The host's NICs always
///   hold: every frame leaves through this class, so a fence stops all output at once and every release is
///   counted.</item>
/// <item><see cref="Promote"/> (the backup becomes primary): release everything held, then unprotected.</item>
/// <item><see cref="Fence"/>: a deposed primary. A one-way latch checked under the lock by the only methods that
///   release, so no release can start after Fence returned. <see cref="Demote"/> later turns the node into a
///   backup that discards whatever the deposed primary's guest had sent.</item>
/// </list>
/// Policy when the backup is lost (a sync aborts on the primary): the primary resumes and keeps holding, because
/// it cannot tell a dead backup from its own isolation; if it were the isolated one, the backup and witness may
/// already have elected the backup, and releasing would show the world a state the new primary does not have.
/// Output is released only when (a) a later sync with a returning backup is acked (releases everything up to it),
/// or (b) consensus commits a ROLE entry saying this primary runs alone (a majority, so this primary is still the
/// leader): the node wiring then calls <see cref="RunUnprotected"/>, which releases everything held and lets
/// output out as it comes until <see cref="Protect"/> (a backup has rejoined and is being synced).
/// Port calls are MAIN-thread only (the engine and the node call these methods there); Fence may be called anywhere.
/// </summary>
public sealed class OutputGuard
{
    private readonly Lock _lock = new();
    private readonly IOutputPort[] _nics;
    private readonly Queue<(ulong SyncEpoch, ulong[] NicEpochs)> _cuts = new();
    private readonly Action<string> _log;
    private GuardState _state = GuardState.Holding;
    private ulong _lastSynced;
    private bool _anySynced;

    public OutputGuard(GuardRole role, IReadOnlyList<IOutputPort> nics, Action<string>? log = null)
    {
        Role = role;
        _nics = nics.ToArray();
        _log = log ?? (m => Console.Error.WriteLine(m));
    }

    public GuardRole Role { get; private set; }
    public GuardState State { get { lock (_lock) return _state; } }
    public bool IsFenced => State == GuardState.Fenced;
    /// <summary>Frames released and discarded so far, over all NICs.</summary>
    public long FramesReleased { get; private set; }
    public long FramesDiscarded { get; private set; }
    /// <summary>Sync epochs cut but not yet released or discarded.</summary>
    public int PendingEpochs { get { lock (_lock) return _cuts.Count; } }

    /// <summary>Start holding on every NIC (at init, before the guest runs).</summary>
    public void Start()
    {
        lock (_lock)
        {
            foreach (var nic in _nics) nic.SetMode(OutputMode.Hold);
        }
    }

    /// <summary>At the stop of sync e (VM stopped): seal every NIC's epoch as part of e.</summary>
    public void CutEpoch(ulong syncEpoch)
    {
        lock (_lock)
        {
            if (_state == GuardState.Fenced) return;
            if (_cuts.Count > 0 && syncEpoch <= _cuts.Last().SyncEpoch)
                throw new InvalidOperationException($"sync epoch {syncEpoch} cut after epoch {_cuts.Last().SyncEpoch}");
            var epochs = new ulong[_nics.Length];
            for (int i = 0; i < _nics.Length; i++) epochs[i] = _nics[i].Cut();
            _cuts.Enqueue((syncEpoch, epochs));
        }
    }

    /// <summary>Sync e is complete (primary: acked by the backup, after vm_start; backup: state e applied).
    /// Returns the frames released (primary) or discarded (backup).</summary>
    public long EpochSynced(ulong syncEpoch)
    {
        lock (_lock)
        {
            if (_anySynced && syncEpoch <= _lastSynced)
                throw new InvalidOperationException($"sync epoch {syncEpoch} completed after epoch {_lastSynced}");
            ulong[]? upto = null;
            while (_cuts.Count > 0 && _cuts.Peek().SyncEpoch <= syncEpoch) upto = _cuts.Dequeue().NicEpochs;
            _lastSynced = syncEpoch;
            _anySynced = true;
            if (upto is null)
            {
                _log($"output guard: sync epoch {syncEpoch} completed but was never cut; nothing to {(Role == GuardRole.Primary ? "release" : "discard")}");
                return 0;
            }
            return Role == GuardRole.Primary ? ReleaseHeld(upto) : DiscardHeld(upto);
        }
    }

    /// <summary>The host says the guest sent frames that are now held: an unprotected primary lets them out at once
    /// (MAIN thread). Returns the frames released (0 in any other state).</summary>
    public long ReleaseUnprotected()
    {
        lock (_lock)
        {
            if (_state != GuardState.Unprotected) return 0;
            return ReleaseHeld(CutAll());
        }
    }

    /// <summary>The backup becomes primary (it won the election): release everything it holds, then unprotected.</summary>
    public long Promote()
    {
        lock (_lock)
        {
            if (_state == GuardState.Fenced) throw new InvalidOperationException("a fenced node cannot be promoted");
            Role = GuardRole.Primary;
            long n = ReleaseEverything();
            _log($"output guard: promoted to primary: released {n} held frame(s); output now leaves unprotected until a backup is synced");
            return n;
        }
    }

    /// <summary>
    /// A committed ROLE entry says this primary runs alone (its backup is gone): release everything held and let
    /// output out as it comes. The node wiring calls this; the sync engine never does on its own (see the class comment).
    /// </summary>
    public long RunUnprotected(string why)
    {
        lock (_lock)
        {
            if (_state == GuardState.Fenced) { _log($"output guard: fenced; ignoring run-unprotected ({why})"); return 0; }
            if (Role != GuardRole.Primary) throw new InvalidOperationException("only a primary can run unprotected");
            bool was = _state == GuardState.Unprotected;
            long n = ReleaseEverything();
            if (!was) _log($"output guard: RUNNING UNPROTECTED ({why}): released {n} held frame(s); output leaves at once until a backup is back");
            return n;
        }
    }

    /// <summary>A backup is back (about to be fully synced): hold output by epoch again.</summary>
    public void Protect()
    {
        lock (_lock)
        {
            if (_state != GuardState.Unprotected) return;
            _state = GuardState.Holding;
            _log("output guard: protected again: holding output until the backup acks");
        }
    }

    /// <summary>This node is deposed (a higher term exists): nothing is ever released again. Any thread; one-way.</summary>
    public void Fence(string why)
    {
        lock (_lock)
        {
            if (_state == GuardState.Fenced || Role != GuardRole.Primary) return;
            _state = GuardState.Fenced;
            _cuts.Clear();
        }
        _log($"output guard: FENCED ({why}): held output will never be released");
    }

    /// <summary>The deposed primary becomes a backup (it rejoins the cluster): everything its guest sent is
    /// discarded, and from now on its own output is held and discarded like any backup's (MAIN thread).</summary>
    public long Demote()
    {
        lock (_lock)
        {
            var all = new ulong[_nics.Length];
            Array.Fill(all, ulong.MaxValue);
            Role = GuardRole.Backup;
            long n = DiscardHeld(all);
            _cuts.Clear();
            _anySynced = false;
            _state = GuardState.Holding;
            _log($"output guard: now a backup's: discarded {n} frame(s) the deposed primary's guest had sent");
            return n;
        }
    }

    private ulong[] CutAll()
    {
        var epochs = new ulong[_nics.Length];
        for (int i = 0; i < _nics.Length; i++) epochs[i] = _nics[i].Cut();
        return epochs;
    }

    private long ReleaseEverything()
    {
        var all = new ulong[_nics.Length];
        Array.Fill(all, ulong.MaxValue);
        long n = ReleaseHeld(all);
        _cuts.Clear();
        _state = GuardState.Unprotected;
        return n;
    }

    /// <summary>The only path to IOutputPort.Release. Caller holds the lock. Returns the frames released.</summary>
    private long ReleaseHeld(ulong[] upto)
    {
        if (_state == GuardState.Fenced || Role != GuardRole.Primary) return 0;
        long total = 0;
        for (int i = 0; i < _nics.Length; i++)
        {
            long n = _nics[i].Release(upto[i]);
            if (n < 0) _log($"output guard: release on NIC {i} failed ({n})");
            else total += n;
        }
        FramesReleased += total;
        return total;
    }

    private long DiscardHeld(ulong[] upto)
    {
        long total = 0;
        for (int i = 0; i < _nics.Length; i++)
        {
            long n = _nics[i].Discard(upto[i]);
            if (n < 0) _log($"output guard: discard on NIC {i} failed ({n})");
            else total += n;
        }
        FramesDiscarded += total;
        return total;
    }
}
