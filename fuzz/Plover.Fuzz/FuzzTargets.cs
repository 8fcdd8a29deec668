using Plover.Fuzz.Targets;

namespace Plover.Fuzz;

/// <summary>Every fuzz target by name (the names of <c>./build.sh fuzz TARGET</c> and of the corpus folders).</summary>
public static class FuzzTargets
{
    /// <summary>New instances of every target (a target keeps state between inputs, as a connection does).</summary>
    public static IReadOnlyList<IFuzzTarget> Create() =>
    [
        new ConsensusFrameTarget(),
        new EntryPayloadTarget(),
        new SyncBackupTarget(),
        new HandshakeTarget(),
        new ConfigTarget(),
        new AdminTarget(),
    ];

    public static IFuzzTarget? Find(string name) => Create().FirstOrDefault(t => t.Name == name);
}
