using System.Text;
using Plover.Hashing;

namespace Plover.Sync;

/// <summary>
/// The global block numbering of the replicated drives, as <see cref="SyncLayout"/> is for RAM: drive d's block i is
/// BlockBase(d) + i, every drive starting on a 64-block boundary, so the global dirty bitmap is the drives' bitmaps
/// back to back. Both replicas must have the same drives (<see cref="Hash"/> over names, sizes and granularities).
/// Blocks are hashed with the RAM's page hasher, so a drive's granularity must be the page size (4 KiB, QEMU's).
/// </summary>
public sealed class DiskLayout
{
    private readonly GuestDrive[] _drives;
    private readonly ulong[] _wordBase;

    public DiskLayout(IReadOnlyList<GuestDrive> drives)
    {
        _drives = drives.ToArray();
        _wordBase = new ulong[_drives.Length + 1];
        var description = new StringBuilder();
        for (int d = 0; d < _drives.Length; d++)
        {
            var drive = _drives[d];
            if (drive.Size == 0 || drive.Granularity != GuestRamBlock.PageSize)
                throw new ArgumentException($"drive '{drive.Name}': size {drive.Size}, granularity {drive.Granularity}; " +
                                            $"a replicated drive needs a size and {GuestRamBlock.PageSize}-byte blocks (hashed as pages)");
            _wordBase[d + 1] = _wordBase[d] + drive.Words;
            description.Append(drive.Name).Append('\0').Append(drive.Size).Append('\0').Append(drive.Granularity).Append('\0');
        }
        Hash = CityHash.Hash64(Encoding.UTF8.GetBytes(description.ToString()));
    }

    public int DriveCount => _drives.Length;
    public GuestDrive Drive(int d) => _drives[d];
    public ulong TotalWords => _wordBase[^1];
    public ulong WordBase(int d) => _wordBase[d];
    public ulong BlockBase(int d) => _wordBase[d] * 64;
    public ulong Hash { get; }

    /// <summary>The drive of global block g and its block number there; false if g is no block of a drive (padding).</summary>
    public bool TryLocate(ulong g, out int drive, out ulong block)
    {
        ulong word = g / 64;
        for (drive = 0; drive < _drives.Length; drive++)
        {
            if (word >= _wordBase[drive + 1]) continue;
            block = g - BlockBase(drive);
            return block < _drives[drive].Blocks;
        }
        block = 0;
        return false;
    }
}
