namespace Plover.Sync;

/// <summary>Where a sync reads the bytes of global page g: guest RAM (<see cref="SyncLayout"/>) or the primary's copy
/// of pages taken before its guest resumed early (<see cref="PageSnapshot"/>).</summary>
public unsafe interface IPageSource
{
    byte* PageAddress(ulong g);
}
