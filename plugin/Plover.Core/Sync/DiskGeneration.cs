namespace Plover.Sync;

/// <summary>
/// How new a replica's drive images are, kept beside them (<see cref="DiskGenerationFiles"/>) so that it survives a
/// full outage, when consensus (in memory only) starts over: <see cref="Number"/> grows each time a replica begins to
/// serve (a fresh cluster's primary takes one past both replicas', a promoted backup one past its own), and a backup
/// takes its primary's number once it has applied a sync. <see cref="Primary"/>: the images served at that number (a
/// backup's copy is older than its primary's, which went on writing). Newer: the higher number; at the same number,
/// the primary's. A fresh cluster's configured primary refuses to start over a peer whose images are newer.
/// </summary>
public readonly record struct DiskGeneration(ulong Number, bool Primary)
{
    public bool IsNewerThan(DiskGeneration other) =>
        Number > other.Number || (Number == other.Number && Primary && !other.Primary);

    public override string ToString() => Number == 0 ? "none" : $"{Number} ({(Primary ? "served as primary" : "synced as backup")})";
}
