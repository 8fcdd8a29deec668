using Plover.Sync;

namespace Plover.Tests.Sync;

/// <summary>The crash-at-every-step tests' fault: once armed, the victim side of <see cref="Pair"/> dies at the
/// occurrence-th time it reaches step (its socket closes and its sync throws, as when the process is killed).</summary>
internal sealed class InjectedCrash(SyncRole victim, SyncStep step, int occurrence)
{
    public SyncPair? Pair { get; set; }
    public bool Armed { get; set; }
    /// <summary>Times the victim reached step while armed.</summary>
    public int Seen { get; private set; }

    public void Hook(SyncRole role, SyncStep at)
    {
        if (!Armed || role != victim || at != step || ++Seen != occurrence) return;
        var engine = role == SyncRole.Primary ? Pair!.Primary : Pair!.Backup;
        engine.Connection?.Dispose();   // the process dies: its socket closes
        throw new IOException($"injected crash of the {role} at {step}");
    }
}
