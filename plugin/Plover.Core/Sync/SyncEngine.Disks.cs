using System.Buffers.Binary;
using System.Diagnostics;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Sync;

/// <summary>
/// The disk part of a sync (issue 15 item 3), when the replicas replicate drives (SyncBegin.disks; proto/sync.proto
/// SyncDisk): the dirty-block bitmaps travel after the RAM's, both sides read the union's blocks at the cut, the
/// backup's block hashes follow its page hashes, the primary's divergent blocks follow its pages, and the backup
/// writes them with the RAM, before loading the devices, inside the same invalid-until-done window. The work itself
/// is <see cref="DiskBlocks"/> and <see cref="DiskStaging"/>.
/// </summary>
public sealed unsafe partial class SyncEngine
{
    private readonly IDiskHost? _diskHost;
    private DiskBlocks? _disks;
    private readonly DiskStaging _diskStaging = new();
    private readonly DiskBody _diskBody = new();
    private bool _syncDisks;   // this sync carries the drives' blocks

    /// <summary>The drives' blocks, built at the first sync (the drive list is fixed once the machine is ready);
    /// null when the host replicates none.</summary>
    private DiskBlocks? Disks
    {
        get
        {
            if (_disks is null && _diskHost is { Drives.Count: > 0 }) _disks = new DiskBlocks(new DiskLayout(_diskHost.Drives));
            return _disks;
        }
    }

    /// <summary>Main thread, VM stopped (inside <see cref="StopVm"/>): this cut's dirty blocks.</summary>
    private void TakeDiskDirt(bool all)
    {
        if (!_syncDisks) return;
        if (all) _disks!.MarkAll();
        _disks!.Take(_diskHost!);
    }

    /// <summary>Both roles, right after the RAM bitmaps (same order: the backup's first), then the union's blocks read
    /// on the main thread with the VM still stopped.</summary>
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
            || header.Total != words || (ulong)frame.Tail.Length != words * 8)
            throw new SyncProtocolException($"disk bitmap e{header.Epoch} ({header.Part}, {header.Total} words, drives {header.LayoutHash:x16}); " +
                                            $"expected e{request.Epoch}, {words} words, drives {disks.Layout.Hash:x16} (the same drives on both replicas)");
        var peer = disks.PeerWords(words);
        for (int w = 0; w < peer.Length; w++) peer[w] = BinaryPrimitives.ReadUInt64LittleEndian(frame.Tail[(w * 8)..]);
        if (Role == SyncRole.Primary) SendDiskBitmap(connection, request, stats);
        stats.DiskUnionBlocks = disks.OrPeer(peer);
        long t = Stopwatch.GetTimestamp();
        OnMain(stats, () => disks.ReadUnion(_diskHost!));
        stats.Pause.DiskRead = Microseconds(t);
    }

    private void SendDiskBitmap(SyncConnection connection, SyncRequest request, SyncStats stats) =>
        stats.Wire.Bitmaps += connection.Send(_diskBody.SetBitmap(request.Epoch, _disks!));

    /// <summary>Backup, after its page hashes: the union blocks' hashes.</summary>
    private void SendDiskHashes(SyncConnection connection, SyncRequest request, SyncStats stats)
    {
        if (!_syncDisks || _syncCheckpoint) return;
        var disks = _disks!;
        disks.Hash(_hasher);
        ulong total = disks.UnionBlocks;
        for (ulong first = 0; first < total; first += (ulong)_options.HashesPerFrame)
        {
            uint count = (uint)Math.Min((ulong)_options.HashesPerFrame, total - first);
            stats.Wire.Hashes += connection.Send(_diskBody.SetHashes(request.Epoch, disks, first, count));
        }
    }

    /// <summary>Primary, after the page hashes: its own block hashes and the backup's, compared (every union block
    /// diverges in checkpoint mode).</summary>
    private void CompareDiskHashes(SyncConnection connection, SyncRequest request, SyncStats stats)
    {
        if (!_syncDisks) return;
        var disks = _disks!;
        ulong total = disks.UnionBlocks;
        if (_syncCheckpoint)
        {
            stats.DiskDivergentBlocks = disks.Compare([], all: true);
            return;
        }
        disks.Hash(_hasher);
        var theirs = disks.PeerWords(total);
        ulong received = 0;
        while (received < total)
        {
            var frame = connection.Read(_options.Timeout);
            Expect(frame, FrameType.SyncDisk);
            stats.Wire.Hashes += WireSize(frame);
            var header = _headers.Disk(frame.Header);
            if (header.Part != DiskPart.DiskHashes || header.Epoch != request.Epoch || header.Total != total || header.FirstIndex != received
                || header.Count == 0 || header.Count > total - received || (ulong)frame.Tail.Length != header.Count * 8UL)
                throw new SyncProtocolException($"disk hash frame e{header.Epoch} ({header.Part}) [{header.FirstIndex}, +{header.Count}) of {header.Total}; " +
                                                $"expected e{request.Epoch} from {received} of {total}");
            for (uint i = 0; i < header.Count; i++)
                theirs[(int)(received + i)] = BinaryPrimitives.ReadUInt64LittleEndian(frame.Tail[(int)(i * 8)..]);
            received += header.Count;
        }
        stats.DiskDivergentBlocks = disks.Compare(theirs);
    }

    /// <summary>Primary, after the pages: the divergent blocks, as read at the cut.</summary>
    private void SendDiskBlocks(SyncConnection connection, SyncRequest request, SyncStats stats)
    {
        if (!_syncDisks) return;
        ulong n = _disks!.DivergentBlocks;
        for (ulong i = 0; i < n; i += (ulong)_options.PagesPerFrame)
        {
            uint count = (uint)Math.Min((ulong)_options.PagesPerFrame, n - i);
            stats.Wire.Pages += connection.Send(_diskBody.SetBlocks(request.Epoch, _disks, i, count));
            Hook(SyncStep.DiskBatch);
        }
    }

    /// <summary>Backup, after the pages: stages the primary's blocks (frame is the first frame after the pages);
    /// returns the first frame after them.</summary>
    private Frame ReceiveDiskBlocks(SyncConnection connection, SyncRequest request, Frame frame, SyncStats stats)
    {
        if (!_syncDisks) return frame;
        var disks = _disks!;
        _diskStaging.Reset(disks.UnionBlocks);
        while (frame.Type == FrameType.SyncDisk)
        {
            stats.Wire.Pages += WireSize(frame);
            var header = _headers.Disk(frame.Header);
            ulong staged = _diskStaging.Count;
            if (header.Part != DiskPart.DiskBlocks || header.Epoch != request.Epoch || header.FirstIndex != staged || header.Count == 0
                || header.Total > disks.UnionBlocks || header.Count > header.Total - staged
                || (ulong)frame.Tail.Length != header.Count * (8UL + GuestRamBlock.PageSize))
                throw new SyncProtocolException($"disk block frame e{header.Epoch} ({header.Part}) [{header.FirstIndex}, +{header.Count}) of {header.Total} " +
                                                $"with {frame.Tail.Length} bytes; expected e{request.Epoch} from {staged}, at most {disks.UnionBlocks}");
            for (int i = 0; i < (int)header.Count; i++)
            {
                var item = frame.Tail.Slice(i * (8 + GuestRamBlock.PageSize), 8 + GuestRamBlock.PageSize);
                _diskStaging.Stage(disks.Layout, disks.Union, BinaryPrimitives.ReadUInt64LittleEndian(item), item[8..]);
            }
            Hook(SyncStep.DiskBatch);
            frame = connection.Read(_options.Timeout);
        }
        stats.DiskDivergentBlocks = _diskStaging.Count;
        return frame;
    }

    /// <summary>Backup, main thread, VM stopped, after the RAM and before the devices: the staged blocks.</summary>
    private void ApplyDiskBlocks()
    {
        if (_syncDisks && _diskStaging.Count > 0) _diskStaging.Apply(_disks!.Layout, _diskHost!);
    }

    /// <summary>The sync completed: the dirt it covered is alike on both replicas.</summary>
    private void DiskSyncCompleted()
    {
        if (_syncDisks) _disks!.Completed();
    }
}
