using System.Diagnostics;
using Plover.Hashing;
using Plover.Sync;

namespace Plover.Native.Host;

/// <summary>
/// The full-RAM check of replication: at a sync point (both VMs stopped in the state they now share) hash every
/// page of every RAM block. Armed from the admin socket on both replicas; comparing the two results (digest first,
/// page hashes to name the differing pages) proves the memories identical or says where they are not.
/// </summary>
internal sealed unsafe class SyncPointRamHash
{
    public sealed record Block(string Name, ulong[] Hashes, ulong Digest);

    public sealed record Result(ulong Epoch, long LogIndex, ulong InputDigest, ulong Digest, double HashMs, Block[] Blocks);

    private readonly Lock _lock = new();
    private Result? _last;
    private bool _armed;

    public Result? Last { get { lock (_lock) return _last; } }
    public bool Armed { get { lock (_lock) return _armed; } }

    /// <summary>Hash all RAM at the engine's next sync point.</summary>
    public void Arm(SyncEngine engine, IGuestMemory memory, PageHasher hasher)
    {
        lock (_lock) _armed = true;
        engine.AtNextSyncPoint(request =>
        {
            long start = Stopwatch.GetTimestamp();
            var blocks = new Block[memory.Blocks.Count];
            var digests = new ulong[blocks.Length];
            for (int i = 0; i < blocks.Length; i++)
            {
                GuestRamBlock b = memory.Blocks[i];
                var hashes = new ulong[b.Pages];
                fixed (ulong* h = hashes)
                {
                    if (b.Pages > 0) hasher.HashPages(b.Host, b.Pages, null, h);
                    digests[i] = CityHash.Hash64((byte*)h, (nuint)(hashes.Length * sizeof(ulong)));
                }
                blocks[i] = new Block(b.Name, hashes, digests[i]);
            }
            ulong digest;
            fixed (ulong* d = digests) digest = CityHash.Hash64((byte*)d, (nuint)(digests.Length * sizeof(ulong)));
            var result = new Result(request.Epoch, request.LogIndex, request.InputDigest, digest,
                Stopwatch.GetElapsedTime(start).TotalMilliseconds, blocks);
            lock (_lock)
            {
                _last = result;
                _armed = false;
            }
        });
    }
}
