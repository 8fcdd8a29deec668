using System.Buffers.Binary;
using System.Diagnostics;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Sync;

public sealed unsafe partial class SyncEngine
{
    private void RunBackup(SyncConnection connection, SyncRequest request, SyncStats stats)
    {
        StopVm(request, stats);

        long t = Stopwatch.GetTimestamp();
        stats.LocalDirtyPages = GatherLocalBitmap();
        SendBitmap(connection, request, stats.LocalDirtyPages, stats);
        ulong unionPages = ReceiveBitmap(connection, request, stats);
        stats.UnionPages = unionPages;
        stats.Pause.Bitmap = Microseconds(t);
        Hook(SyncStep.BitmapsExchanged);

        t = Stopwatch.GetTimestamp();
        if (!_options.Checkpoint)
        {
            HashUnion(unionPages);
            SendHashes(connection, request, unionPages, stats);
        }
        stats.Pause.Hash = Microseconds(t);

        // Stage everything; guest RAM and devices are not touched until the transfer is complete.
        ulong staged = ReceiveState(connection, request, unionPages, stats);
        stats.DivergentPages = staged;
        stats.IdenticalPages = unionPages - staged;
        Hook(SyncStep.BeforeApply);

        t = Stopwatch.GetTimestamp();
        Apply(request, staged, stats);
        stats.Pause.Apply = Microseconds(t);
        // A full sync staged up to all of guest RAM: give that back instead of keeping it for syncs that need little.
        if (request.FullSync) { _staging.Release(); _pageList.Release(); }
        Hook(SyncStep.BeforeAck);

        stats.Wire.Control += connection.Send(_controlBody.Set(FrameType.SyncAck, new SyncAck { Epoch = request.Epoch, PagesApplied = staged }));
    }

    private void SendHashes(SyncConnection connection, SyncRequest request, ulong unionPages, SyncStats stats)
    {
        for (ulong first = 0; first < unionPages; first += (ulong)_options.HashesPerFrame)
        {
            uint count = (uint)Math.Min((ulong)_options.HashesPerFrame, unionPages - first);
            stats.Wire.Hashes += connection.Send(_hashesBody.Set(request.Epoch, _localHashes.Pointer, first, count, unionPages));
            Hook(SyncStep.HashChunk);
        }
    }

    /// <summary>Receives page batches into staging, then the device state; returns the pages staged. Every page
    /// number must be valid, in the union and above the previous one.</summary>
    private ulong ReceiveState(SyncConnection connection, SyncRequest request, ulong unionPages, SyncStats stats)
    {
        var layout = _layout!;
        ulong* list = _pageList.Ensure(Math.Max(unionPages, 1));
        byte* staging = _staging.Ensure(Math.Max(unionPages, 1) * GuestRamBlock.PageSize);
        ulong* union = _union.Pointer;
        ulong staged = 0;
        ulong deviceReceived = 0;
        bool pagesDone = false;
        long t = Stopwatch.GetTimestamp();
        _deviceState.Clear();
        while (true)
        {
            var frame = connection.Read(_options.Timeout);
            if (frame.Type == FrameType.SyncPages && !pagesDone)
            {
                stats.Wire.Pages += WireSize(frame);
                var header = SyncPages.Parser.ParseFrom(frame.Header);
                ulong count = header.Count;
                if (header.Epoch != request.Epoch || count == 0 || count > unionPages - staged
                    || (ulong)frame.Tail.Length != count * (8 + GuestRamBlock.PageSize))
                    throw new SyncProtocolException($"page frame e{header.Epoch} with {count} pages and {frame.Tail.Length} bytes " +
                                                    $"(e{request.Epoch}, {staged} of at most {unionPages} staged)");
                var numbers = frame.Tail[..(int)(count * 8)];
                for (int i = 0; i < (int)count; i++)
                {
                    ulong g = BinaryPrimitives.ReadUInt64LittleEndian(numbers[(i * 8)..]);
                    if ((staged > 0 || i > 0) && g <= list[staged + (ulong)i - 1])
                        throw new SyncProtocolException($"page {g} is out of order");
                    if (!layout.IsValidPage(g) || (union[g / 64] & (1UL << (int)(g % 64))) == 0)
                        throw new SyncProtocolException($"page {g} is not a page of the union");
                    list[staged + (ulong)i] = g;
                }
                frame.Tail[(int)(count * 8)..].CopyTo(new Span<byte>(staging + staged * GuestRamBlock.PageSize, (int)(count * GuestRamBlock.PageSize)));
                staged += count;
                Hook(SyncStep.PageBatch);
            }
            else if (frame.Type == FrameType.SyncDeviceState)
            {
                if (!pagesDone)
                {
                    pagesDone = true;
                    stats.Pause.Transfer = Microseconds(t);
                    t = Stopwatch.GetTimestamp();
                    Hook(SyncStep.BeforeDeviceState);
                }
                stats.Wire.DeviceState += WireSize(frame);
                var header = SyncDeviceState.Parser.ParseFrom(frame.Header);
                ulong length = (ulong)frame.Tail.Length;
                if (header.Epoch != request.Epoch || header.TotalLength > (ulong)_options.MaxDeviceStateBytes
                    || header.Offset != deviceReceived || length > header.TotalLength - deviceReceived)
                    throw new SyncProtocolException($"device state frame e{header.Epoch} [{header.Offset}, +{length}) of {header.TotalLength} " +
                                                    $"(e{request.Epoch}, {deviceReceived} received, limit {_options.MaxDeviceStateBytes})");
                if (length > 0) frame.Tail.CopyTo(_deviceState.Append((int)length));
                deviceReceived += length;
                if (deviceReceived == header.TotalLength)
                {
                    if (header.PagesSent != staged) throw new SyncProtocolException($"primary sent {header.PagesSent} pages, {staged} arrived");
                    stats.Pause.DeviceState = Microseconds(t);
                    stats.DeviceStateBytes = deviceReceived;
                    return staged;
                }
            }
            else
            {
                Expect(frame, pagesDone ? FrameType.SyncDeviceState : FrameType.SyncPages);
            }
        }
    }

    /// <summary>Everything arrived: copy the staged pages into guest RAM (engine thread, VM stopped), then on the
    /// main thread report the written ranges, load the devices (after RAM), clear the dirt, discard this epoch's
    /// own output and resume.</summary>
    private void Apply(SyncRequest request, ulong staged, SyncStats stats)
    {
        var layout = _layout!;
        ulong* list = _pageList.Pointer;
        byte* staging = _staging.Pointer;
        if (staged > 0) _stateInvalid = true;   // from the first page copied until devices are loaded
        for (ulong i = 0; i < staged; i++)
            Buffer.MemoryCopy(staging + i * GuestRamBlock.PageSize, layout.PageAddress(list[i]), GuestRamBlock.PageSize, GuestRamBlock.PageSize);
        var atSyncPoint = Interlocked.Exchange(ref _atSyncPoint, null);
        try
        {
            _main.Invoke(() =>
            {
                ReportUpdatedRanges(staged);
                _vm.LoadDeviceState(_deviceState.Data);
                _stateInvalid = false;
                _vm.DirtyClear();
                stats.OutputUtc = DateTime.UtcNow;
                stats.OutputFrames = _guard?.EpochSynced(request.Epoch) ?? 0;
                if (atSyncPoint is not null) return;   // resumed below, after the action
                _vm.Start();
                _vmStopped = false;
            });
            if (atSyncPoint is not null)
            {
                RunSyncPointAction(request, atSyncPoint);
                _main.Invoke(() =>
                {
                    _vm.Start();
                    _vmStopped = false;
                });
            }
        }
        catch (SyncHostException e) when (_stateInvalid)
        {
            throw new SyncHostException($"applying state e{request.Epoch} failed after guest RAM was written ({e.Message}): " +
                                        "this backup is INVALID until a full sync", e);
        }
    }

    /// <summary>ram_updated once per run of consecutive pages within a block.</summary>
    private void ReportUpdatedRanges(ulong staged)
    {
        var layout = _layout!;
        ulong* list = _pageList.Pointer;
        ulong i = 0;
        while (i < staged)
        {
            ulong first = list[i];
            int block = layout.BlockOf(first);
            ulong end = layout.PageBase(block) + layout.Block(block).Pages;
            ulong j = i + 1;
            while (j < staged && list[j] == list[j - 1] + 1 && list[j] < end) j++;
            _vm.RamUpdated(block, (first - layout.PageBase(block)) * GuestRamBlock.PageSize, (j - i) * GuestRamBlock.PageSize);
            i = j;
        }
    }
}
