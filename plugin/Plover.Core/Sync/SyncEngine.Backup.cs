using System.Buffers.Binary;
using System.Diagnostics;
using System.Numerics;
using Plover.Hashing;
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
        var disk = DiskStepBegin(stats);
        ExchangeDiskBitmaps(connection, request, stats);
        DiskStepEnd(stats, disk);
        stats.UnionPages = unionPages;
        stats.Pause.Bitmap = Microseconds(t);
        Hook(SyncStep.BitmapsExchanged);

        t = Stopwatch.GetTimestamp();
        _putOffered = 0;
        if (connection.Ucx is not null) OfferStaging(connection, request, unionPages, stats);
        if (!_syncCheckpoint)
        {
            HashUnion(unionPages);
            SendHashes(connection, request, unionPages, stats);
        }
        disk = DiskStepBegin(stats);
        ExchangeDiskChunksAsBackup(connection, request, stats);
        DiskStepEnd(stats, disk);
        stats.Pause.Hash = Microseconds(t);
        CountDiskLocalDirt(stats);   // the primary compares meanwhile
        if (_syncDeviceDelta) SendDeviceHashes(connection, request, stats);

        // Stage everything; guest RAM and devices are not touched until the transfer is complete.
        ulong staged = ReceiveState(connection, request, unionPages, stats);
        stats.DivergentPages = staged;
        stats.IdenticalPages = unionPages - staged;
        Hook(SyncStep.BeforeApply);

        t = Stopwatch.GetTimestamp();
        var atSyncPoint = Interlocked.Exchange(ref _atSyncPoint, null);
        Apply(connection, request, staged, stats);
        stats.Pause.Apply = Microseconds(t);
        Hook(SyncStep.BeforeAck);

        // The ack first: the primary's output waits for it, not for this VM to run again.
        stats.Wire.Control += connection.Send(_controlBody.Set(FrameType.SyncAck, new SyncAck
        {
            Epoch = request.Epoch, PagesApplied = staged, DiskBlocksApplied = stats.DiskDivergentBlocks,
        }));
        RunSyncPointAction(request, atSyncPoint);
        t = Stopwatch.GetTimestamp();
        // A joining backup that learns from the primary that the cluster checkpoints keeps its VM stopped (its
        // replica core may not know the mode yet, so the checkpoint gate could let it run).
        bool stayStopped = stats.Joined && stats.NextCheckpoint;
        OnMain(stats, () =>
        {
            if (!stayStopped) _vm.Start();
            _vmStopped = false;
        });
        stats.Pause.Resume = Microseconds(t);
        // The VM runs again and the primary has its ack: now the figures of this sync join the totals.
        if (RecordsDivergence) Divergence.Record(_layout!, stats, _pageList.Pointer, staged);
        // A full sync staged up to all of guest RAM: give that back instead of keeping it for syncs that need little.
        if (request.FullSync) { ReleaseStaging(); _pageList.Release(); ReleaseDiskMemory(); }
    }

    private bool RecordsDivergence => _options.RecordDivergence && !_syncCheckpoint;

    /// <summary>Most divergent pages per sub-block hash frame (128 KiB of hashes at 64-byte sub-blocks).</summary>
    private const int SubBlockHashFramePages = 256;

    private void SendHashes(SyncConnection connection, SyncRequest request, ulong unionPages, SyncStats stats)
    {
        for (ulong first = 0; first < unionPages; first += (ulong)_options.HashesPerFrame)
        {
            uint count = (uint)Math.Min((ulong)_options.HashesPerFrame, unionPages - first);
            stats.Wire.Hashes += connection.Send(_hashesBody.Set(request.Epoch, _localHashes.Pointer, first, count, unionPages));
            Hook(SyncStep.HashChunk);
        }
    }

    /// <summary>Sends the key and hash of each section of this VM's own device state (saved at the cut, as the
    /// primary's): the primary then sends only the sections that differ. Sections unknown: none (all travel).</summary>
    private void SendDeviceHashes(SyncConnection connection, SyncRequest request, SyncStats stats)
    {
        AwaitDeviceSave(stats);
        if (!_deviceSections.Parse(_ownDeviceState.Data, out string? error) && !_sectionsWarned)
        {
            _sectionsWarned = true;
            _log($"sync e{request.Epoch}: no device state sections to compare ({error}): the primary sends them all");
        }
        stats.Wire.DeviceState += connection.Send(_deviceHashesBody.Set(request.Epoch, _ownDeviceState.Memory, _deviceSections));
    }

    /// <summary>Receives what the primary sends after the hashes: whole pages, or (sub-block mode) the divergent
    /// list followed by the lock-step chunks; then the device state. Everything goes to staging; returns the pages
    /// staged. Nothing from the primary is trusted: page numbers must be valid, in the union and ascending, counts
    /// and lengths must add up exactly.</summary>
    private ulong ReceiveState(SyncConnection connection, SyncRequest request, ulong unionPages, SyncStats stats)
    {
        long t = Stopwatch.GetTimestamp();
        _deviceState.Clear();
        _syncSubBlockBytes = 0;
        ulong staged = 0;
        double subBlocks = 0;
        var frame = connection.Read(_options.Timeout);
        if (frame.Type == FrameType.SyncBitmap && !_syncCheckpoint && unionPages > 0)
        {
            staged = ReceiveSubBlocks(connection, request, unionPages, frame, stats);
            subBlocks = stats.Pause.SubBlocks;
            frame = connection.Read(_options.Timeout);
        }
        else
        {
            while (frame.Type == FrameType.SyncPages)
            {
                staged = StageWholePages(request, unionPages, frame, staged, stats);
                frame = connection.Read(_options.Timeout);
            }
        }
        stats.SubBlockBytes = _syncSubBlockBytes;
        stats.Pause.Transfer = Microseconds(t) - subBlocks;
        if (frame.Type is not (FrameType.SyncDeviceState or FrameType.SyncAbort))
            throw new SyncProtocolException($"expected a {(staged == 0 && _syncSubBlockBytes == 0 ? "SyncPages or " : "")}SyncDeviceState frame, got {frame.Type}");
        Hook(SyncStep.BeforeDeviceState);

        t = Stopwatch.GetTimestamp();
        ulong deviceReceived = 0;
        ulong? deviceTotal = null;   // the first chunk's total: every chunk of the transfer must declare the same
        while (true)
        {
            Expect(frame, FrameType.SyncDeviceState);
            stats.Wire.DeviceState += WireSize(frame);
            var header = _headers.DeviceState(frame.Header);
            ulong length = (ulong)frame.Tail.Length;
            deviceTotal ??= header.TotalLength;
            // A total lowered below what already arrived made "total - received" wrap and the chunk was taken
            // (fuzz/corpus/sync/regression-device-total-changes).
            if (header.Epoch != request.Epoch || header.TotalLength != deviceTotal || header.TotalLength > (ulong)_options.MaxDeviceStateBytes
                || header.Offset != deviceReceived || length > header.TotalLength - deviceReceived)
                throw new SyncProtocolException($"device state frame e{header.Epoch} [{header.Offset}, +{length}) of {header.TotalLength} " +
                                                $"(e{request.Epoch}, {deviceReceived} of {deviceTotal} received, limit {_options.MaxDeviceStateBytes})");
            if (length > 0) frame.Tail.CopyTo(_deviceState.Append((int)length));
            deviceReceived += length;
            if (deviceReceived == header.TotalLength)
            {
                if (header.PagesSent != staged) throw new SyncProtocolException($"primary sent {header.PagesSent} pages, {staged} arrived");
                _deviceToLoad = _deviceState.Memory;
                if (header.Patched)
                {
                    // A patch names this backup's own sections: only valid against the summary it sent.
                    if (!_syncDeviceDelta || _deviceSections.Count == 0)
                        throw new SyncProtocolException("a patched device state, but this backup sent no section hashes");
                    if (!DeviceStateDelta.Rebuild(_ownDeviceState.Data, _deviceSections, _deviceState.Data, checked((int)Math.Min(header.Sections, int.MaxValue)),
                                                  _deviceDelta, out string? error))
                        throw new SyncProtocolException($"bad device state delta from the primary: {error}");
                    _deviceToLoad = _deviceDelta.Memory;
                }
                stats.Pause.DeviceState = Microseconds(t);
                stats.DeviceStateBytes = deviceReceived;
                stats.DeviceSections = header.SectionsSaved;
                stats.DeviceSectionsSent = header.Sections;
                return staged;
            }
            frame = connection.Read(_options.Timeout);
        }
    }

    /// <summary>One frame of whole pages into staging (page numbers ascending, in the union).</summary>
    private ulong StageWholePages(SyncRequest request, ulong unionPages, in Frame frame, ulong staged, SyncStats stats)
    {
        var layout = _layout!;
        ulong* list = _pageList.Ensure(Math.Max(unionPages, 1));
        byte* staging = EnsureStaging(Math.Max(unionPages, 1) * GuestRamBlock.PageSize);
        ulong* union = _union.Pointer;
        stats.Wire.Pages += WireSize(frame);
        var header = _headers.Pages(frame.Header);
        ulong count = header.Count;
        ulong perPage = header.Put ? 8UL : GuestRamBlock.PageSize;   // put: a hash in place of each page
        if (header.Epoch != request.Epoch || header.SubBlockBytes != 0 || count == 0 || count > unionPages - staged
            || (ulong)frame.Tail.Length != count * (8 + perPage))
            throw new SyncProtocolException($"page frame e{header.Epoch} with {count} pages{(header.SubBlockBytes != 0 ? $" of {header.SubBlockBytes}-byte sub-blocks" : "")} " +
                                            $"and {frame.Tail.Length} bytes (e{request.Epoch}, whole pages, {staged} of at most {unionPages} staged)");
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
        if (header.Put)
        {
            ExpectOffered((staged + count) * GuestRamBlock.PageSize);
            for (int i = 0; i < (int)count; i++)
                VerifyPutPage(staged + (ulong)i, list[staged + (ulong)i], BinaryPrimitives.ReadUInt64LittleEndian(frame.Tail[(int)((count + (ulong)i) * 8)..]));
            stats.PutBytes += count * GuestRamBlock.PageSize;
        }
        else
            frame.Tail[(int)(count * 8)..].CopyTo(new Span<byte>(staging + staged * GuestRamBlock.PageSize, (int)(count * GuestRamBlock.PageSize)));
        stats.PageDataBytes += count * GuestRamBlock.PageSize;
        Hook(SyncStep.PageBatch);
        return staged + count;
    }

    /// <summary>
    /// Sub-block mode: takes the divergent list from the primary's DIVERGENT bitmap (listFrame), then for each
    /// chunk hashes its own copies of the chunk's pages, sends the hashes (one chunk ahead), and stages the primary's
    /// answer: a mask and the differing sub-blocks of every page of the chunk, in order. Returns the pages staged (the whole
    /// list). Sets Pause.SubBlocks (the list and the hashes; the sub-blocks' arrival counts as transfer).
    /// </summary>
    private ulong ReceiveSubBlocks(SyncConnection connection, SyncRequest request, ulong unionPages, in Frame listFrame, SyncStats stats)
    {
        long start = Stopwatch.GetTimestamp();
        var layout = _layout!;
        stats.Wire.Bitmaps += WireSize(listFrame);
        var header = _headers.Bitmap(listFrame.Header);
        ulong words = (unionPages + 63) / 64;
        if (header.Kind != BitmapKind.BitmapDivergent || header.Epoch != request.Epoch || header.TotalWords != words
            || !SyncProtocol.IsValidSubBlockSize(header.SubBlockBytes) || header.ChunkPages < 1 || header.ChunkPages > SyncProtocol.MaxChunkPages
            || !SyncProtocol.IsValidSubBlockHashBytes(header.SubBlockHashBytes) || header.SetBits > unionPages)
            throw new SyncProtocolException($"divergent list e{header.Epoch} ({header.Kind}, {header.TotalWords} words, {header.SetBits} pages, " +
                                            $"{header.SubBlockBytes}-byte sub-blocks, chunks of {header.ChunkPages}, {header.SubBlockHashBytes}-byte hashes); " +
                                            $"expected e{request.Epoch}, {words} words for {unionPages} union pages, sub-blocks of " +
                                            $"{SyncProtocol.MinSubBlockBytes}..{SyncProtocol.MaxSubBlockBytes} bytes (a power of two), chunks of " +
                                            $"1..{SyncProtocol.MaxChunkPages}, hashes of 1, 2, 4 or 8 bytes");
        ulong* marks = DecodeList(_divergentBits, listFrame, header, unionPages, "divergent list");

        // The list: global numbers of the marked union pages, ascending.
        ulong divergent = header.SetBits;
        ulong* list = _pageList.Ensure(Math.Max(divergent, 1));
        ulong* union = _union.Pointer;
        ulong k = 0, n = 0;
        for (ulong w = 0; w < layout.TotalWords && n < divergent; w++)
        {
            for (ulong b = union[w]; b != 0; b &= b - 1, k++)
                if ((marks[k / 64] & (1UL << (int)(k % 64))) != 0) list[n++] = w * 64 + (ulong)BitOperations.TrailingZeroCount(b);
        }
        if (n != divergent) throw new InvalidOperationException($"listed {n} divergent pages, the list has {divergent}");
        int blockBytes = (int)header.SubBlockBytes;
        int hashBytes = (int)header.SubBlockHashBytes;
        _syncSubBlockBytes = blockBytes;
        _syncSubBlockHashBytes = stats.SubBlockHashBytes = hashBytes;
        Hook(SyncStep.DivergentListed);

        int perPage = GuestRamBlock.PageSize / blockBytes;
        int maskBytes = SubBlockPagesBody.MaskBytes(blockBytes);
        ulong all = perPage == 64 ? ulong.MaxValue : (1UL << perPage) - 1;
        ulong chunk = header.ChunkPages;
        // this backup's sub-block hashes of every divergent page, kept: with shortened hashes each staged page's root
        // is recomputed from them (RootMatches)
        ulong* mine = _localSub.Ensure(Math.Max(1, divergent) * (ulong)perPage);
        bool check = hashBytes < 8;
        byte* failed = _failed.Ensure(Math.Max(divergent, 1));
        ulong* merged = stackalloc ulong[64];
        ulong* masks = _masks.Ensure(Math.Max(divergent, 1));
        ulong* expected = _expectedHashes.Ensure(Math.Max(divergent, 1));
        byte* staging = EnsureStaging(Math.Max(divergent, 1) * GuestRamBlock.PageSize);
        ulong stagedBytes = 0;
        double transfer = 0;
        ulong staged = 0;
        // One chunk of hashes ahead: the next chunk is hashed and sent before this one's sub-blocks are read, so the
        // primary has it when it is done sending (its pages wait in the socket buffers meanwhile).
        if (divergent > 0) SendSubBlockHashes(connection, request, list, 0, Math.Min(chunk, divergent), divergent, blockBytes, hashBytes, mine, stats);
        for (ulong first = 0; first < divergent; first += chunk)
        {
            ulong end = Math.Min(first + chunk, divergent);
            if (end < divergent) SendSubBlockHashes(connection, request, list, end, Math.Min(end + chunk, divergent), divergent, blockBytes, hashBytes, mine, stats);

            long t = Stopwatch.GetTimestamp();
            while (staged < end)
            {
                var frame = connection.Read(_options.Timeout);
                Expect(frame, FrameType.SyncPages);
                stats.Wire.Pages += WireSize(frame);
                var pages = _headers.Pages(frame.Header);
                ulong count = pages.Count;
                if (pages.Epoch != request.Epoch || pages.SubBlockBytes != (uint)blockBytes || pages.FirstIndex != staged
                    || count == 0 || count > end - staged)
                    throw new SyncProtocolException($"sub-block frame e{pages.Epoch} of {pages.SubBlockBytes}-byte blocks for pages [{pages.FirstIndex}, +{count}); " +
                                                    $"expected e{request.Epoch}, {blockBytes}-byte blocks from page {staged} to {end} of {divergent}");
                var tail = frame.Tail;
                int at = 0;
                ulong blocks = 0;
                for (ulong i = 0; i < count; i++)
                {
                    if (tail.Length - at < maskBytes + 8) throw new SyncProtocolException($"sub-block frame ends inside the mask or hash of page {staged + i}");
                    ulong m = 0;
                    for (int b = 0; b < maskBytes; b++) m |= (ulong)tail[at + b] << (8 * b);
                    at += maskBytes;
                    expected[staged + i] = BinaryPrimitives.ReadUInt64LittleEndian(tail[at..]);
                    at += 8;
                    if (m == 0 || (m & ~all) != 0)
                        throw new SyncProtocolException($"sub-block mask {m:x} of page {staged + i} names no sub-block or one past the {perPage} of a page");
                    int bytes = BitOperations.PopCount(m) * blockBytes;
                    if (pages.Put)
                    {
                        // put: a hash in the tail for each sub-block already in staging
                        int putHashes = BitOperations.PopCount(m) * 8;
                        if (tail.Length - at < putHashes) throw new SyncProtocolException($"put completion ends inside the hashes of page {staged + i}");
                        ExpectOffered(stagedBytes + (ulong)bytes);
                        for (int h = 0; h < putHashes; h += 8)
                            VerifyPutSubBlock(stagedBytes + (ulong)(h / 8 * blockBytes), blockBytes, BinaryPrimitives.ReadUInt64LittleEndian(tail[(at + h)..]), staged + i);
                        stats.PutBytes += (ulong)bytes;
                        at += putHashes;
                    }
                    else
                    {
                        if (tail.Length - at < bytes) throw new SyncProtocolException($"sub-block frame ends inside the sub-blocks of page {staged + i}");
                        tail.Slice(at, bytes).CopyTo(new Span<byte>(staging + stagedBytes, bytes));
                        at += bytes;
                    }
                    if (check)
                        failed[staged + i] = RootMatches(mine + (staged + i) * (ulong)perPage, perPage, m, staging + stagedBytes, blockBytes, merged,
                                                         expected[staged + i]) ? (byte)0 : (byte)1;
                    stagedBytes += (ulong)bytes;
                    masks[staged + i] = m;
                    blocks += (ulong)BitOperations.PopCount(m);
                }
                if (at != tail.Length || blocks != pages.Blocks)
                    throw new SyncProtocolException($"sub-block frame of {tail.Length} bytes holds {at} bytes of {count} pages, {blocks} sub-blocks; it claims {pages.Blocks}");
                staged += count;
                stats.SubBlocks += blocks;
                stats.PageDataBytes += blocks * (ulong)blockBytes;
                Hook(SyncStep.PageBatch);
            }
            transfer += Microseconds(t);
        }
        stats.Pause.SubBlocks = Microseconds(start) - transfer;
        return staged;
    }

    /// <summary>Hashes the sub-blocks of divergent pages [first, end) (one chunk) and sends them frame by frame, so the
    /// primary takes in one frame while this side hashes the next.</summary>
    private void SendSubBlockHashes(SyncConnection connection, SyncRequest request, ulong* list, ulong first, ulong end, ulong divergent,
                                    int blockBytes, int hashBytes, ulong* mine, SyncStats stats)
    {
        int perPage = GuestRamBlock.PageSize / blockBytes;
        ulong pagesPerFrame = (ulong)Math.Clamp(_options.HashesPerFrame / perPage, 1, SubBlockHashFramePages);
        for (ulong i = first; i < end; i += pagesPerFrame)
        {
            uint count = (uint)Math.Min(pagesPerFrame, end - i);
            ulong* hashes = mine + i * (ulong)perPage;
            _workers.Hash(_layout!, list + i, count, blockBytes, hashes);
            if (i == first) Hook(SyncStep.SubBlocksHashed);
            stats.Wire.Hashes += connection.Send(_hashesBody.SetSubBlocks(request.Epoch, hashes, i, count, divergent, blockBytes, hashBytes));
            Hook(SyncStep.SubBlockHashChunk);
        }
    }

    /// <summary>Everything arrived: copy the staged pages (or sub-blocks) into guest RAM (engine thread and, with
    /// <see cref="SyncOptions.ParallelApply"/>, every core; VM stopped), comparing each with the copy it replaces
    /// (<see cref="SyncStats.Divergence"/>), then on the main thread report the written ranges, load the devices (after
    /// RAM), clear the dirt and discard this epoch's own output. The VM stays stopped: it resumes once the ack is sent.</summary>
    private void Apply(SyncConnection connection, SyncRequest request, ulong staged, SyncStats stats)
    {
        int blockBytes = _syncSubBlockBytes;
        ulong* masks = blockBytes == 0 ? null : _masks.Pointer;
        ulong* offsets = null;
        if (masks != null)
        {
            // where each page's sub-blocks start in staging: pages can then be applied in any order
            offsets = _applyOffsets.Ensure(Math.Max(staged, 1));
            ulong at = 0;
            for (ulong i = 0; i < staged; i++)
            {
                offsets[i] = at;
                at += (ulong)(BitOperations.PopCount(masks[i]) * blockBytes);
            }
        }
        int* differences = RecordsDivergence ? _differences.Ensure(Math.Max(2 * staged, 2)) : null;
        // Full 8-byte sub-block hashes are as strong as the page root itself: nothing was checked.
        ulong repaired = masks != null && staged > 0 && _syncSubBlockHashBytes < 8 ? Repair(connection, request, staged, blockBytes, stats) : 0;
        if (staged > 0 || (_syncDisks && _diskStaging.Count > 0)) _stateInvalid = true;   // from the first page (or block) copied until devices are loaded
        ulong half = staged / 2;                // in two halves: the crash tests stop between them (a torn state)
        ApplyPages(0, half, masks, offsets, blockBytes, differences);
        if (half > 0) Hook(SyncStep.Applying);
        ApplyPages(half, staged - half, masks, offsets, blockBytes, differences);
        if (repaired > 0) WriteRepairedPages(staged);
        var sample = new DivergenceSample();
        if (differences != null)
            for (ulong i = 0; i < staged; i++) sample.Add(differences[2 * i], differences[2 * i + 1]);
        stats.Divergence = sample;
        try
        {
            OnMain(stats, () =>
            {
                long load = Stopwatch.GetTimestamp();
                ReportUpdatedRanges(staged);
                var disk = DiskStepBegin(stats);
                ApplyDiskBlocks();   // with the RAM, before the devices: a failure leaves the backup invalid
                DiskStepEnd(stats, disk);
                _vm.LoadDeviceState(_deviceToLoad.Span);
                stats.Pause.DeviceLoad = Microseconds(load);
                _stateInvalid = false;
                _vm.DirtyClear();
                DiskSyncCompleted();
                stats.OutputUtc = DateTime.UtcNow;
                stats.OutputFrames = _guard?.EpochSynced(request.Epoch) ?? 0;
            });
        }
        catch (SyncHostException e) when (_stateInvalid)
        {
            throw new SyncHostException($"applying state e{request.Epoch} failed after guest RAM was written ({e.Message}): " +
                                        "this backup is INVALID until a full sync", e);
        }
    }

    /// <summary>With shortened hashes: would the page whose own sub-block hashes are own, with the sub-blocks mask
    /// names staged at staged, have the primary's root? (merged: room for 64 hashes.)</summary>
    private static bool RootMatches(ulong* own, int perPage, ulong mask, byte* staged, int blockBytes, ulong* merged, ulong expected)
    {
        Buffer.MemoryCopy(own, merged, 64 * sizeof(ulong), perPage * sizeof(ulong));
        for (ulong m = mask; m != 0; m &= m - 1, staged += blockBytes)
            merged[BitOperations.TrailingZeroCount(m)] = CityHash.Hash64(staged, (nuint)blockBytes);
        return SubBlockRoot(merged, perPage) == expected;
    }

    /// <summary>Sub-block mode with shortened hashes, before guest RAM is touched: the pages whose root did not match
    /// as they were staged (a differing sub-block was taken for equal: a collision) are asked for whole (the REPAIR
    /// round) into _repairStaging, and each must then have the primary's root; anything else aborts the sync with this
    /// backup unchanged. Returns the pages repaired.</summary>
    private ulong Repair(SyncConnection connection, SyncRequest request, ulong staged, int blockBytes, SyncStats stats)
    {
        var layout = _layout!;
        ulong* list = _pageList.Pointer;
        ulong* expected = _expectedHashes.Pointer;
        byte* failed = _failed.Pointer;
        ulong words = (staged + 63) / 64;
        ulong* repair = _repairBits.Ensure(Math.Max(words, 1));
        _repairBits.Clear(words);
        ulong count = 0;
        for (ulong i = 0; i < staged; i++)
            if (failed[i] != 0) { repair[i / 64] |= 1UL << (int)(i % 64); count++; }
        if (count == 0) return 0;

        stats.Wire.Bitmaps += connection.Send(_bitmapBody.SetRepair(request.Epoch, request.LogIndex, layout, repair, words, count));
        Hook(SyncStep.Repairing);
        byte* whole = _repairStaging.Ensure(count * GuestRamBlock.PageSize);
        int perPage = GuestRamBlock.PageSize / blockBytes;
        ulong* hashes = stackalloc ulong[64];
        ulong next = 0, received = 0;
        while (received < count)
        {
            var frame = connection.Read(_options.Timeout);
            Expect(frame, FrameType.SyncPages);
            stats.Wire.Pages += WireSize(frame);
            var header = _headers.Pages(frame.Header);
            ulong n = header.Count;
            if (header.Epoch != request.Epoch || header.SubBlockBytes != 0 || header.Put || n == 0 || n > count - received
                || (ulong)frame.Tail.Length != n * (8 + GuestRamBlock.PageSize))
                throw new SyncProtocolException($"repair frame e{header.Epoch} with {n} pages and {frame.Tail.Length} bytes; expected e{request.Epoch}, " +
                                                $"whole pages, {count - received} of {count} still to come");
            var tail = frame.Tail;
            for (int j = 0; j < (int)n; j++, next++)
            {
                while (failed[next] == 0) next++;
                ulong g = BinaryPrimitives.ReadUInt64LittleEndian(tail[(j * 8)..]);
                if (g != list[next]) throw new SyncProtocolException($"repair frame sends page {g}; page {list[next]} was asked for next");
                byte* to = whole + (received + (ulong)j) * GuestRamBlock.PageSize;
                tail.Slice((int)n * 8 + j * GuestRamBlock.PageSize, GuestRamBlock.PageSize).CopyTo(new Span<byte>(to, GuestRamBlock.PageSize));
                SubBlockKernel.HashPage(to, blockBytes, hashes);
                if (SubBlockRoot(hashes, perPage) != expected[next])
                    throw new SyncProtocolException($"page {g} sent whole does not have the primary's own root of its sub-block hashes");
            }
            received += n;
        }
        stats.RepairedPages = count;
        return count;
    }

    /// <summary>The repaired pages, whole, over what their sub-blocks wrote (guest RAM is being written: VM stopped).</summary>
    private void WriteRepairedPages(ulong staged)
    {
        byte* failed = _failed.Pointer;
        byte* whole = _repairStaging.Pointer;
        ulong* list = _pageList.Pointer;
        for (ulong i = 0, k = 0; i < staged; i++)
            if (failed[i] != 0)
                Buffer.MemoryCopy(whole + k++ * GuestRamBlock.PageSize, _layout!.PageAddress(list[i]), GuestRamBlock.PageSize, GuestRamBlock.PageSize);
    }

    /// <summary>Staged pages [first, first + count) into guest RAM (see <see cref="Apply"/>).</summary>
    private void ApplyPages(ulong first, ulong count, ulong* masks, ulong* offsets, int blockBytes, int* differences)
    {
        byte* staging = _staging.Pointer;
        _workers.Apply(_layout!, _pageList.Pointer + first, (long)count, masks == null ? staging + first * GuestRamBlock.PageSize : staging,
                       masks == null ? null : masks + first, offsets == null ? null : offsets + first, blockBytes,
                       differences == null ? null : differences + 2 * first, _options.ParallelApply);
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
