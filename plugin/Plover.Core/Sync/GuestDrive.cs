namespace Plover.Sync;

/// <summary>A replicated drive as the host describes it (ABI 1.3 PloverDrive): its dirty bitmap has one bit per
/// <see cref="Granularity"/> bytes; the last block may be short.</summary>
public sealed record GuestDrive(string Name, ulong Size, ulong Granularity)
{
    public ulong Blocks => (Size + Granularity - 1) / Granularity;
    public ulong Words => (Blocks + 63) / 64;

    /// <summary>Bytes of block i that lie on the drive (the last block may be short).</summary>
    public int BlockLength(ulong block) => (int)Math.Min(Granularity, Size - block * Granularity);
}
