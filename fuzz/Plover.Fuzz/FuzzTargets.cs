using Plover.Fuzz.Targets;

namespace Plover.Fuzz;

/// <summary>Every fuzz target by name (the names of <c>./build.sh fuzz TARGET</c> and of the corpus folders).</summary>
public static class FuzzTargets
{
    public static readonly IReadOnlyList<IFuzzTarget> All =
    [
        new ConsensusFrameTarget(),
        new EntryPayloadTarget(),
        new SyncBackupTarget(),
        new HandshakeTarget(),
        new ConfigTarget(),
    ];

    public static IFuzzTarget? Find(string name) => All.FirstOrDefault(t => t.Name == name);
}
