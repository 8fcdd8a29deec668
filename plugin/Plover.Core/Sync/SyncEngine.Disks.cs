using System.Buffers.Binary;
using System.Diagnostics;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Sync;

/// <summary>
/// The disk part of a sync (issue 15 items 3 and 4), when the replicas replicate drives (SyncBegin.disks;
/// proto/sync.proto SyncDisk): the dirty-block bitmaps travel after the RAM's, then, right after the backup's page
/// hashes, the union goes chunk by chunk (<see cref="SyncOptions.DiskChunkBytes"/>): both sides read the chunk's blocks
/// with the VM stopped, the backup sends its hashes of them, the primary answers with the blocks whose hashes differ.
/// The backup stages up to one chunk of blocks and writes them with the RAM, before loading the devices, inside the
/// same invalid-until-done window; a sync that sends more (a full sync of a large disk that differs) is written as it
/// comes, the backup marked invalid (<see cref="StateInvalid"/>) until the sync completes. The work itself is
/// <see cref="DiskBlocks"/> and <see cref="DiskStaging"/>; a sync in more than one chunk shows its progress
/// (<see cref="DiskProgress"/>, logged at each tenth).
/// </summary>
public sealed unsafe partial class SyncEngine
{
    private readonly IDiskHost? _diskHost;
    private DiskBlocks? _disks;
    private readonly DiskStaging _diskStaging = new();
    private readonly DiskBody _diskBody = new();
    private Action? _readDiskChunk, _writeDiskStaging;   // made once: nothing allocated per chunk
    private bool _syncDisks;   // this sync carries the drives' blocks
    private ulong _diskChunkBlocks = 1;   // this sync's chunk (the primary's setting)
    private bool _diskWrittenEarly;   // backup: this sync wrote disk blocks before the apply (more than one chunk's worth)
    private ulong _primaryDiskGeneration;   // backup: the primary's image generation, from this sync's SyncBegin

    /// <summary>Bytes held for disk blocks read and staged (tests: bounded by the chunk).</summary>
    internal ulong DiskBufferBytes => (_disks?.ReadBufferBytes ?? 0) + _diskStaging.BufferBytes;

    /// <summary>The disk part of the current or last sync that ran in more than one chunk.</summary>
    public DiskSyncProgress DiskProgress { get; } = new();

    /// <summary>The drives' blocks, built at the first sync (the drive list is fixed once the machine is ready);
    /// null when the host replicates none.</summary>
    private DiskBlocks? Disks
    {
        get
        {
            if (_disks is null && _diskHost is { Drives.Count: > 0 })
            {
                var disks = _disks = new DiskBlocks(new DiskLayout(_diskHost.Drives));
                _readDiskChunk = () => disks.ReadChunk(_diskHost);
                _writeDiskStaging = () =>
                {
                    _diskHost.MarkTorn();
                    _diskStaging.Apply(disks.Layout, _diskHost);
                };
            }
            return _disks;
        }
    }

    /// <summary>The chunk of this engine's own setting (a primary's; a backup takes the primary's from SyncBegin).</summary>
    private ulong OwnDiskChunkBlocks => (ulong)(_options.DiskChunkBytes / GuestRamBlock.PageSize);

    /// <summary>This sync's disk part runs in more than one chunk: the primary cannot resume its guest before the
    /// last chunk is read (its copy of the blocks is one chunk at a time).</summary>
    private bool DiskSyncInChunks => _syncDisks && _disks!.Chunks > 1;

    /// <summary>Main thread, VM stopped (inside <see cref="StopVm"/>): this cut's dirty blocks.</summary>
    private void TakeDiskDirt(bool all)
    {
        if (!_syncDisks) return;
        if (all) _disks!.MarkAll();
        _disks!.Take(_diskHost!);
    }

    /// <summary>Both roles, right after the RAM bitmaps (same order: the backup's first), then the first chunk's
    /// blocks read on the main thread with the VM still stopped (with one chunk, before the primary's early resume:
    /// the copy is its snapshot).</summary>
    private void ExchangeDiskBitmaps(SyncConnection connection, SyncRequest request, SyncStats stats)
    {
        if (!_syncDisks) return;
        var disks = _disks!;
        if (Role == SyncRole.Backup) SendDiskBitmap(connection, request, stats);
        var frame = connection.Read(_options.Timeout);
        Expect(frame, FrameType.SyncDisk);
        stats.Wire.Bitmaps += WireSize(frame);
        var header = _headers.Disk(frame.Header);
        ulong words = disks.Layout.TotalWords;
        if (header.Part != DiskPart.DiskBitmap || header.Epoch != request.Epoch || header.LayoutHash != disks.Layout.Hash
            || header.Total != words)
            throw new SyncProtocolException($"disk bitmap e{header.Epoch} ({header.Part}, {header.Total} words, drives {header.LayoutHash:x16}); " +
                                            $"expected e{request.Epoch}, {words} words, drives {disks.Layout.Hash:x16} (the same drives on both replicas)");
        var peer = disks.PeerWords(words);
        peer.Clear();
        ulong bits;
        string? error;
        fixed (ulong* into = peer)
        {
            if (!BitmapCodec.TryDecodeOr(frame.Tail, header.Encoding, into, words, out bits, out error))
                throw new SyncProtocolException($"bad disk bitmap from the peer: {error}");
        }
        if (bits != header.SetBits)
            throw new SyncProtocolException($"peer's disk bitmap has {bits} blocks set, it claims {header.SetBits}");
        if (Role == SyncRole.Primary) SendDiskBitmap(connection, request, stats);
        stats.DiskUnionBlocks = disks.OrPeer(peer, _diskChunkBlocks);
        stats.DiskChunks = disks.Chunks;
        if (disks.NextChunk()) ReadDiskChunk(stats);
    }

    /// <summary>Main thread, VM stopped: the current chunk's blocks (not needed by a checkpoint's backup).</summary>
    private void ReadDiskChunk(SyncStats stats)
    {
        if (_syncCheckpoint && Role == SyncRole.Backup) return;
        long t = Stopwatch.GetTimestamp();
        OnMain(stats, _readDiskChunk!);
        stats.Pause.DiskRead += Microseconds(t);
    }

    private void SendDiskBitmap(SyncConnection connection, SyncRequest request, SyncStats stats) =>
        stats.Wire.Bitmaps += connection.Send(_diskBody.SetBitmap(request.Epoch, _disks!));

    /// <summary>Backup, after its page hashes: chunk by chunk, its hashes of the chunk's blocks (none in checkpoint
    /// mode), then the primary's divergent blocks of the chunk, staged (or, past one chunk's worth, written).</summary>
    private void ExchangeDiskChunksAsBackup(SyncConnection connection, SyncRequest request, SyncStats stats)
    {
        if (!_syncDisks) return;
        var disks = _disks!;
        _diskStaging.Reset(disks.ChunkBlocks);
        _diskWrittenEarly = false;
        StartDiskProgress(request, disks);
        try
        {
            for (ulong chunk = 0; chunk < disks.Chunks; chunk++)
            {
                if (chunk > 0 && disks.NextChunk()) ReadDiskChunk(stats);   // the first one was read at the bitmaps
                if (!_syncCheckpoint)
                {
                    disks.Hash(_hasher);
                    ulong end = disks.ChunkFirst + disks.ChunkCount;
                    for (ulong at = disks.ChunkFirst; at < end; at += (ulong)_options.HashesPerFrame)
                    {
                        uint count = (uint)Math.Min((ulong)_options.HashesPerFrame, end - at);
                        stats.Wire.Hashes += connection.Send(_diskBody.SetHashes(request.Epoch, disks, at, count));
                    }
                }
                var (blocks, bytes) = ReceiveDiskChunk(connection, request, disks, stats);
                stats.DiskDivergentBlocks += blocks;
                Hook(SyncStep.DiskChunk);
                AdvanceDiskProgress(disks, blocks, bytes);
            }
        }
        finally { DiskProgress.Stop(); }
    }

    /// <summary>Backup: the primary's divergent blocks of the current chunk (at least one frame); returns the blocks
    /// and their wire bytes.</summary>
    private (ulong Blocks, ulong Bytes) ReceiveDiskChunk(SyncConnection connection, SyncRequest request, DiskBlocks disks, SyncStats stats)
    {
        ulong received = 0, bytes = 0;
        ulong? total = null;   // the first frame's: every frame of the chunk must declare the same
        do
        {
            var frame = connection.Read(_options.Timeout);
            Expect(frame, FrameType.SyncDisk);
            int size = WireSize(frame);
            stats.Wire.Pages += size;
            bytes += (ulong)size;
            var header = _headers.Disk(frame.Header);
            total ??= header.Total;
            if (header.Part != DiskPart.DiskBlocks || header.Epoch != request.Epoch || header.ChunkFirst != disks.ChunkFirst
                || header.Total != total || header.Total > disks.ChunkCount || header.FirstIndex != received
                || header.Count > header.Total - received || (header.Count == 0 && header.Total != 0)
                || (ulong)frame.Tail.Length != header.Count * (8UL + GuestRamBlock.PageSize))
                throw new SyncProtocolException($"disk block frame e{header.Epoch} ({header.Part}) of chunk {header.ChunkFirst}: [{header.FirstIndex}, +{header.Count}) " +
                                                $"of {header.Total} with {frame.Tail.Length} bytes; expected e{request.Epoch}, chunk {disks.ChunkFirst} of " +
                                                $"{disks.ChunkCount} blocks, from {received}");
            for (int i = 0; i < (int)header.Count; i++)
            {
                var item = frame.Tail.Slice(i * (8 + GuestRamBlock.PageSize), 8 + GuestRamBlock.PageSize);
                if (_diskStaging.IsFull) WriteStagedDiskBlocks(request, disks);
                _diskStaging.Stage(disks, BinaryPrimitives.ReadUInt64LittleEndian(item), item[8..]);
            }
            received += header.Count;
            if (header.Count > 0) Hook(SyncStep.DiskBatch);
        } while (received < total);
        return (received, bytes);
    }

    /// <summary>Backup: the staging is full (this sync sends more than a chunk of blocks): write what it holds now.
    /// From here until the sync completes the drives are neither the old sync point's nor the new one's: the backup is
    /// invalid (never promoted; a failed sync leaves it so until a sync completes).</summary>
    private void WriteStagedDiskBlocks(SyncRequest request, DiskBlocks disks)
    {
        if (!_diskWrittenEarly)
            _log($"sync e{request.Epoch}: more than {disks.ChunkBlocks} divergent disk blocks: writing them as they come; " +
                 "this backup is INVALID until the sync completes");
        _diskWrittenEarly = true;
        _stateInvalid = true;
        _main.Invoke(_writeDiskStaging!);   // marks the images torn first
        _diskStaging.Clear();
    }

    /// <summary>Primary, after the backup's page hashes: chunk by chunk, its own block hashes and the backup's,
    /// compared (every block diverges in checkpoint mode), and the divergent blocks sent.</summary>
    private void ExchangeDiskChunksAsPrimary(SyncConnection connection, SyncRequest request, SyncStats stats)
    {
        if (!_syncDisks) return;
        var disks = _disks!;
        StartDiskProgress(request, disks);
        try
        {
            for (ulong chunk = 0; chunk < disks.Chunks; chunk++)
            {
                // the first one was read at the bitmaps; the VM is stopped: an early resume waits for the last chunk
                if (chunk > 0 && disks.NextChunk()) ReadDiskChunk(stats);
                ulong divergent = _syncCheckpoint ? disks.Compare([], all: true) : CompareDiskChunk(connection, request, disks, stats);
                ulong bytes = SendDiskChunk(connection, request, disks, stats);
                stats.DiskDivergentBlocks += divergent;
                Hook(SyncStep.DiskChunk);
                AdvanceDiskProgress(disks, divergent, bytes);
            }
        }
        finally { DiskProgress.Stop(); }
    }

    /// <summary>Primary: hashes the chunk, receives the backup's hashes of it, compares; returns the divergent blocks.</summary>
    private ulong CompareDiskChunk(SyncConnection connection, SyncRequest request, DiskBlocks disks, SyncStats stats)
    {
        disks.Hash(_hasher);
        ulong first = disks.ChunkFirst, count = disks.ChunkCount, total = disks.UnionBlocks;
        var theirs = disks.PeerWords(count);
        ulong received = 0;
        while (received < count)
        {
            var frame = connection.Read(_options.Timeout);
            Expect(frame, FrameType.SyncDisk);
            stats.Wire.Hashes += WireSize(frame);
            var header = _headers.Disk(frame.Header);
            if (header.Part != DiskPart.DiskHashes || header.Epoch != request.Epoch || header.Total != total || header.ChunkFirst != first
                || header.FirstIndex != first + received || header.Count == 0 || header.Count > count - received
                || (ulong)frame.Tail.Length != header.Count * 8UL)
                throw new SyncProtocolException($"disk hash frame e{header.Epoch} ({header.Part}) [{header.FirstIndex}, +{header.Count}) of {header.Total}, " +
                                                $"chunk {header.ChunkFirst}; expected e{request.Epoch} from {first + received} of {total}, chunk {first} of {count} blocks");
            for (uint i = 0; i < header.Count; i++)
                theirs[(int)(received + i)] = BinaryPrimitives.ReadUInt64LittleEndian(frame.Tail[(int)(i * 8)..]);
            received += header.Count;
        }
        return disks.Compare(theirs);
    }

    /// <summary>Primary: the chunk's divergent blocks, as read (one empty frame if none); returns their wire bytes.</summary>
    private ulong SendDiskChunk(SyncConnection connection, SyncRequest request, DiskBlocks disks, SyncStats stats)
    {
        ulong n = disks.DivergentBlocks, bytes = 0, i = 0;
        do
        {
            uint count = (uint)Math.Min((ulong)_options.PagesPerFrame, n - i);
            int size = connection.Send(_diskBody.SetBlocks(request.Epoch, disks, i, count));
            stats.Wire.Pages += size;
            bytes += (ulong)size;
            if (count > 0) Hook(SyncStep.DiskBatch);
            i += count;
        } while (i < n);
        return bytes;
    }

    /// <summary>A sync of more than one chunk shows its progress (and logs where it starts).</summary>
    private void StartDiskProgress(SyncRequest request, DiskBlocks disks)
    {
        if (disks.Chunks <= 1) return;
        DiskProgress.Start(request.Epoch, disks.UnionBlocks, disks.Chunks, Stopwatch.GetTimestamp());
        _log($"sync e{request.Epoch}: the disk part compares {disks.UnionBlocks} blocks ({disks.UnionBlocks * GuestRamBlock.PageSize / (1024.0 * 1024 * 1024):F2} GiB) " +
             $"in {disks.Chunks} chunks of {disks.ChunkBlocks} blocks ({disks.ChunkBlocks * GuestRamBlock.PageSize >> 20} MiB)" +
             (Role == SyncRole.Primary ? "; the guest stays stopped until the last chunk is read" : ""));
    }

    private void AdvanceDiskProgress(DiskBlocks disks, ulong sent, ulong bytes)
    {
        if (disks.Chunks <= 1) return;
        if (DiskProgress.Advance(disks.ChunkCount, sent, bytes, Stopwatch.GetTimestamp()) is { } line) _log(line);
    }

    /// <summary>Backup, main thread, VM stopped, after the RAM and before the devices: the staged blocks.</summary>
    private void ApplyDiskBlocks()
    {
        if (!_syncDisks) return;
        if (_diskStaging.Count > 0)
        {
            _diskHost!.MarkTorn();   // a crash from here to the end of the writes leaves a torn image
            Hook(SyncStep.DiskApplying);
            _diskStaging.Apply(_disks!.Layout, _diskHost);
        }
        _diskHost!.ClearTorn();   // the drives are the primary's at the cut (a mark found at start goes here too)
        if (_primaryDiskGeneration > 0)   // and as new as the primary's were (a change is written once)
            _diskHost.RecordGeneration(new DiskGeneration(_primaryDiskGeneration, Primary: false));
    }

    /// <summary>The sync completed: the dirt it covered is alike on both replicas.</summary>
    private void DiskSyncCompleted()
    {
        if (_syncDisks) _disks!.Completed();
    }

    /// <summary>After a full sync: its chunk buffers go back (the syncs that follow need a few blocks).</summary>
    private void ReleaseDiskMemory()
    {
        _disks?.ReleaseChunkMemory();
        _diskStaging.Release();
    }

    /// <summary>Backup: the primary's chunk, checked (a backup holds up to two of them).</summary>
    private void TakeDiskChunk(SyncBegin begin)
    {
        if (!_syncDisks) return;
        if (begin.DiskChunkBlocks < 1 || begin.DiskChunkBlocks > SyncProtocol.MaxDiskChunkBlocks)
            throw new SyncProtocolException($"the primary's disk chunk is {begin.DiskChunkBlocks} blocks; " +
                                            $"expected 1..{SyncProtocol.MaxDiskChunkBlocks} (sync.diskChunkMiB at most 1024)");
        _diskChunkBlocks = begin.DiskChunkBlocks;
        _primaryDiskGeneration = begin.DiskGeneration;
    }
}
