using Plover.Sync;

namespace Plover.Tests.Sync;

/// <summary>
/// Random guest writes on both replicas between syncs, of every kind a real pair of VMs produces: the same write
/// on both (identical), different writes (divergent), a write on one side only (divergent), and writes that store
/// what the page already held (dirty but identical). Remembers which pages were dirtied so the test can compute
/// the exact set of pages a sync must send.
/// </summary>
public sealed class Workload(SyncPair pair, int seed)
{
    private readonly Random _rng = new(seed);
    private readonly HashSet<(int Block, ulong Page)> _dirty = new();

    public int DirtyPages => _dirty.Count;

    /// <summary>Dirties about fraction of all pages; about divergentShare of them end up different.</summary>
    public void Run(double fraction, double divergentShare)
    {
        var blocks = pair.PrimaryMemory.Blocks;
        for (int b = 0; b < blocks.Count; b++)
        {
            ulong pages = blocks[b].Pages;
            ulong count = (ulong)Math.Max(1, pages * fraction);
            for (ulong i = 0; i < count; i++)
            {
                ulong page = (ulong)_rng.NextInt64((long)pages);
                int offset = _rng.Next(512) * 8;
                ulong value = (ulong)_rng.NextInt64();
                _dirty.Add((b, page));
                if (_rng.NextDouble() >= divergentShare)
                {
                    // identical outcome: same write on both, or a write of the same bytes on one or both sides
                    switch (_rng.Next(3))
                    {
                        case 0: pair.PrimaryMemory.Write(b, page, offset, value); pair.BackupMemory.Write(b, page, offset, value); break;
                        case 1: pair.PrimaryMemory.Touch(b, page); break;
                        default: pair.BackupMemory.Touch(b, page); break;
                    }
                }
                else
                {
                    switch (_rng.Next(3))
                    {
                        case 0: pair.PrimaryMemory.Write(b, page, offset, value); pair.BackupMemory.Write(b, page, offset, ~value); break;
                        case 1: pair.PrimaryMemory.Write(b, page, offset, value); break;
                        default: pair.BackupMemory.Write(b, page, offset, value); break;
                    }
                }
            }
        }
    }

    /// <summary>Pages dirtied since the last <see cref="Reset"/> whose bytes differ between the replicas now.</summary>
    public int CountDivergent() =>
        _dirty.Count(d => !pair.PrimaryMemory.Page(d.Block, d.Page).SequenceEqual(pair.BackupMemory.Page(d.Block, d.Page)));

    public void Reset() => _dirty.Clear();
}
