using System.Buffers.Binary;
using System.Diagnostics;
using System.Numerics;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Sync;

public sealed unsafe partial class SyncEngine
{
    private void RunPrimary(SyncConnection connection, SyncRequest request, SyncStats stats)
    {
        // A sync-point action (a check of both replicas' RAM) needs this guest stopped in the shared state until the
        // ack: it rules out an early resume. Kept for the next sync if this one fails.
        var atSyncPoint = Interlocked.Exchange(ref _atSyncPoint, null);
        try { RunPrimary(connection, request, stats, atSyncPoint); }
        catch
        {
            if (atSyncPoint is not null) Interlocked.CompareExchange(ref _atSyncPoint, atSyncPoint, null);
            throw;
        }
    }

    private void RunPrimary(SyncConnection connection, SyncRequest request, SyncStats stats, Action<SyncRequest>? atSyncPoint)
    {
        _putWriter = null;
        StopVm(request, stats);

        // Bitmaps: the backup sends first, we OR and answer with ours (one direction at a time: no deadlock).
        long t = Stopwatch.GetTimestamp();
        stats.LocalDirtyPages = GatherLocalBitmap();
        ulong unionPages = ReceiveBitmap(connection, request, stats);
        SendBitmap(connection, request, stats.LocalDirtyPages, stats);
        var disk = DiskStepBegin(stats);
        ExchangeDiskBitmaps(connection, request, stats);   // and the union's blocks read, before any early resume
        DiskStepEnd(stats, disk);
        stats.UnionPages = unionPages;
        stats.Pause.Bitmap = Microseconds(t);
        Hook(SyncStep.BitmapsExchanged);

        // Early resume once the union is known (a small one): from here on every page is read from the copy of the union.
        IPageSource pages = _layout!;
        bool resume = _options.EarlyResume && atSyncPoint is null;
        ulong copyLimit = (ulong)Math.Max(_options.EarlyResumeMaxPages, 0);
        var point = _options.ResumePoint;
        if (point == ResumePoint.Auto) point = unionPages <= (ulong)Math.Max(_options.SmallUnionPages, 0) ? ResumePoint.Bitmaps : ResumePoint.Compare;
        // A disk union in more than one chunk is read chunk by chunk with the guest stopped: it can resume only at the compare.
        if (resume && point == ResumePoint.Bitmaps && !DiskSyncInChunks)
        {
            if (unionPages <= copyLimit) pages = ResumeFromCopy(request, stats, _union.Pointer, unionPages);
            resume = false;
        }

        // Hashes: ours in parallel with the backup's, then theirs arrive in union page order.
        t = Stopwatch.GetTimestamp();
        if (!_syncCheckpoint) HashUnion(unionPages);
        if (connection.Ucx is not null) ReceiveStagingOffer(connection, request, unionPages, stats);   // sent before its hashes
        if (!_syncCheckpoint) ReceiveHashes(connection, request, unionPages, stats);
        disk = DiskStepBegin(stats);
        ExchangeDiskChunksAsPrimary(connection, request, stats);   // blocks sent too: only the RAM's divergent pages wait
        DiskStepEnd(stats, disk);
        stats.Pause.Hash = Microseconds(t);

        // Sub-blocks only where pages are compared by hash and the divergence is a sync's, not a join's whole RAM.
        bool subBlocks = _options.SubBlockBytes > 0 && !_syncCheckpoint && !request.FullSync && unionPages > 0;
        _syncSubBlockBytes = subBlocks ? _options.SubBlockBytes : 0;
        stats.SubBlockBytes = _syncSubBlockBytes;

        t = Stopwatch.GetTimestamp();
        ulong divergent = CompareHashes(unionPages, subBlocks);
        stats.DivergentPages = divergent;
        stats.IdenticalPages = unionPages - divergent;
        stats.Pause.Compare = Microseconds(t);

        // Early resume once the hashes are compared: only the divergent pages are copied.
        if (resume && divergent <= copyLimit)
            pages = ResumeFromCopy(request, stats, DivergentBitmap(divergent), divergent);

        // The backup's device section hashes (sent after its page hashes) are read only now: the guest need not wait
        // for the backup's device save.
        t = Stopwatch.GetTimestamp();
        _peerSections = 0;
        if (_syncDeviceDelta) ReceiveDeviceHashes(connection, request, stats);
        stats.Pause.DeviceState += Microseconds(t);

        if (subBlocks)
        {
            SendSubBlocks(connection, request, pages, unionPages, divergent, stats);
        }
        else
        {
            t = Stopwatch.GetTimestamp();
            if (_putWriter is not null) PutPages(connection, request, pages, divergent, stats);
            else SendPages(connection, request, pages, divergent, stats);
            stats.Pause.Transfer = Microseconds(t);
        }
        Hook(SyncStep.BeforeDeviceState);

        t = Stopwatch.GetTimestamp();
        SendDeviceState(connection, request, divergent, stats);
        stats.Pause.DeviceState += Microseconds(t);
        Hook(SyncStep.BeforeApply);

        // The backup applies and acks; only then may this epoch's output leave.
        t = Stopwatch.GetTimestamp();
        CountDiskLocalDirt(stats);   // while the backup applies
        var frame = connection.Read(_options.Timeout);
        if (frame.Type == FrameType.SyncBitmap && subBlocks)
        {
            SendRepairs(connection, request, pages, divergent, frame, stats);
            frame = connection.Read(_options.Timeout);
        }
        Expect(frame, FrameType.SyncAck);
        stats.Wire.Control += WireSize(frame);
        var ack = _headers.Ack(frame.Header);
        ulong diskBlocks = stats.DiskDivergentBlocks;
        if (ack.Epoch != request.Epoch || ack.PagesApplied != divergent || ack.DiskBlocksApplied != diskBlocks)
            throw new SyncProtocolException($"ack for e{ack.Epoch} with {ack.PagesApplied} pages, {ack.DiskBlocksApplied} disk blocks; " +
                                            $"expected e{request.Epoch} with {divergent}, {diskBlocks}");
        DiskSyncCompleted();
        stats.Pause.Apply = Microseconds(t);
        RunSyncPointAction(request, atSyncPoint);   // one set since waits for the next sync

        t = Stopwatch.GetTimestamp();
        bool resumed = _resumedEarly;
        OnMain(stats, () =>
        {
            if (!resumed)
            {
                _vm.DirtyClear();
                _vm.Start();
                _vmStopped = false;
            }
            stats.OutputUtc = DateTime.UtcNow;
            stats.OutputFrames = _guard?.EpochSynced(request.Epoch) ?? 0;   // after vm_start: frames leave only while running
        });
        stats.Pause.Resume += Microseconds(t);
        if (request.FullSync) ReleaseDiskMemory();   // up to a chunk: syncs that need little then hold little
    }

    /// <summary>The backup's REPAIR list (a page it put together from its sub-blocks would not hash to ours: a sub-block
    /// hash collision): those divergent pages whole, from the same source as their sub-blocks.</summary>
    private void SendRepairs(SyncConnection connection, SyncRequest request, IPageSource pages, ulong divergent, in Frame listFrame, SyncStats stats)
    {
        stats.Wire.Bitmaps += WireSize(listFrame);
        var header = _headers.Bitmap(listFrame.Header);
        ulong words = (divergent + 63) / 64;
        if (header.Kind != BitmapKind.BitmapRepair || header.Epoch != request.Epoch || header.TotalWords != words
            || header.SetBits == 0 || header.SetBits > divergent)
            throw new SyncProtocolException($"repair list e{header.Epoch} ({header.Kind}, {header.TotalWords} words, {header.SetBits} pages); " +
                                            $"expected e{request.Epoch}, {words} words for {divergent} divergent pages, at least one set");
        ulong* marks = DecodeList(_repairBits, listFrame, header, divergent, "repair list");
        // The repaired pages' numbers, in divergent-list order, reuse the sub-block hashes' buffer.
        ulong* repair = _localSub.Ensure(header.SetBits);
        ulong* list = _pageList.Pointer;
        ulong n = 0;
        for (ulong w = 0; w < words; w++)
            for (ulong b = marks[w]; b != 0; b &= b - 1) repair[n++] = list[w * 64 + (ulong)BitOperations.TrailingZeroCount(b)];
        for (ulong i = 0; i < n; i += (ulong)_options.PagesPerFrame)
        {
            uint count = (uint)Math.Min((ulong)_options.PagesPerFrame, n - i);
            stats.Wire.Pages += connection.Send(_pagesBody.Set(request.Epoch, pages, repair + i, count));
            stats.PageDataBytes += count * (ulong)GuestRamBlock.PageSize;
        }
        stats.RepairedPages = n;
        Hook(SyncStep.Repairing);
    }

    /// <summary>Copies the pages of bitmap (count of them) and resumes the guest: the rest of the sync reads the copy.</summary>
    private IPageSource ResumeFromCopy(SyncRequest request, SyncStats stats, ulong* bitmap, ulong count)
    {
        long t = Stopwatch.GetTimestamp();
        _snapshot.Take(_layout!, bitmap, count, _workers);
        stats.Pause.Snapshot = Microseconds(t);
        stats.SnapshotPages = count;
        AwaitDeviceSave(stats);
        ResumeEarly(request, stats);
        Hook(SyncStep.ResumedEarly);
        return _snapshot;
    }

    /// <summary>The divergent pages (_pageList, count of them) as a global bitmap over the layout.</summary>
    private ulong* DivergentBitmap(ulong count)
    {
        ulong words = _layout!.TotalWords;
        ulong* bits = _divergentPages.Ensure(words);
        new Span<ulong>(bits, checked((int)words)).Clear();
        ulong* list = _pageList.Pointer;
        for (ulong i = 0; i < count; i++) bits[list[i] / 64] |= 1UL << (int)(list[i] % 64);
        return bits;
    }

    /// <summary>Main thread: the guest runs the next epoch while this sync goes on from the snapshot. Its dirt from
    /// here on belongs to the next sync; output stays held (this epoch's until the ack, the next one's until its sync).</summary>
    private void ResumeEarly(SyncRequest request, SyncStats stats)
    {
        long t = Stopwatch.GetTimestamp();
        OnMain(stats, () =>
        {
            _vm.DirtyClear();
            _vm.Start();
            _vmStopped = false;
            _resumedEarly = true;
            stats.ResumedEarly = true;
            ResumedEarly?.Invoke(request);
        });
        stats.Pause.Resume = Microseconds(t);
        stats.Pause.Guest = Microseconds(_guestStoppedAt);
    }

    private void ReceiveHashes(SyncConnection connection, SyncRequest request, ulong unionPages, SyncStats stats)
    {
        ulong* remote = _remoteHashes.Ensure(Math.Max(unionPages, 1));
        ulong received = 0;
        while (received < unionPages)
        {
            var frame = connection.Read(_options.Timeout);
            Expect(frame, FrameType.SyncHashes);
            stats.Wire.Hashes += WireSize(frame);
            var header = _headers.Hashes(frame.Header);
            if (header.Epoch != request.Epoch || header.Total != unionPages || header.FirstIndex != received || header.Count == 0
                || header.Count > unionPages - received || (ulong)frame.Tail.Length != header.Count * 8UL)
                throw new SyncProtocolException($"hash frame e{header.Epoch} [{header.FirstIndex}, +{header.Count}) of {header.Total} with {frame.Tail.Length} bytes; " +
                                                $"expected e{request.Epoch} from {received} of {unionPages}");
            frame.Tail.CopyTo(new Span<byte>(remote + received, frame.Tail.Length));
            if (!BitConverter.IsLittleEndian)
                for (ulong i = received; i < received + header.Count; i++) remote[i] = BinaryPrimitivesReverse(remote[i]);
            received += header.Count;
            Hook(SyncStep.HashChunk);
        }
    }

    private static ulong BinaryPrimitivesReverse(ulong v) => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v);

    /// <summary>Fills _pageList with the global numbers of the union pages whose hashes differ (all of them in
    /// checkpoint mode), in page order; returns how many. With divergentBits, also sets bit k of _divergentBits for
    /// each differing union page k (the divergent list as the backup receives it).</summary>
    private ulong CompareHashes(ulong unionPages, bool divergentBits)
    {
        var layout = _layout!;
        ulong* union = _union.Pointer;
        ulong* list = _pageList.Ensure(Math.Max(unionPages, 1));
        ulong* mine = _localHashes.Pointer;
        ulong* theirs = _remoteHashes.Pointer;
        ulong* listHashes = _syncCheckpoint ? null : _pageHashes.Ensure(Math.Max(unionPages, 1));   // for page puts
        ulong* marks = null;
        if (divergentBits)
        {
            ulong words = (unionPages + 63) / 64;
            marks = _divergentBits.Ensure(Math.Max(words, 1));
            _divergentBits.Clear(words);
        }
        bool all = _syncCheckpoint;
        ulong k = 0, n = 0;
        for (ulong w = 0; w < layout.TotalWords; w++)
        {
            ulong bits = union[w];
            if (bits == 0) continue;
            int count = BitOperations.PopCount(bits);
            if (!all && new ReadOnlySpan<ulong>(mine + k, count).SequenceEqual(new ReadOnlySpan<ulong>(theirs + k, count)))
            {
                k += (ulong)count;
                continue;
            }
            while (bits != 0)
            {
                int bit = BitOperations.TrailingZeroCount(bits);
                if (all || mine[k] != theirs[k])
                {
                    if (listHashes != null) listHashes[n] = mine[k];
                    list[n++] = w * 64 + (ulong)bit;
                    if (marks != null) marks[k / 64] |= 1UL << (int)(k % 64);
                }
                k++;
                bits &= bits - 1;
            }
        }
        return n;
    }

    /// <summary>
    /// Sub-block mode: tells the backup which union pages differ, then, chunk by chunk, hashes its own sub-blocks of
    /// the chunk's pages and, as each frame of the backup's sub-block hashes arrives, sends of each of its pages the
    /// sub-blocks whose hashes differ: pages travel while the backup still hashes the rest of the chunk (and, ahead,
    /// the next one). A page whose hash differed but none of whose sub-block hashes do (a sub-block hash collision)
    /// is sent whole: the page hash has the last word. Each page's root (<see cref="SubBlockRoot"/>) goes with its
    /// sub-blocks, for a backup that received shortened hashes to check.
    /// </summary>
    private void SendSubBlocks(SyncConnection connection, SyncRequest request, IPageSource pages, ulong unionPages, ulong divergent, SyncStats stats)
    {
        var layout = _layout!;
        int blockBytes = _syncSubBlockBytes;
        int perPage = GuestRamBlock.PageSize / blockBytes;
        ulong all = perPage == 64 ? ulong.MaxValue : (1UL << perPage) - 1;
        ulong chunk = (ulong)_options.SubBlockChunkPages;
        long start = Stopwatch.GetTimestamp();
        double transfer = 0;
        int hashBytes = stats.SubBlockHashBytes = _options.SubBlockHashBytes;
        ulong keep = hashBytes == 8 ? ulong.MaxValue : (1UL << (8 * hashBytes)) - 1;   // the bytes of a hash the backup sends
        stats.Wire.Bitmaps += connection.Send(_bitmapBody.SetDivergent(request.Epoch, request.LogIndex, layout, _divergentBits.Pointer,
            (unionPages + 63) / 64, divergent, blockBytes, (int)chunk, hashBytes));
        Hook(SyncStep.DivergentListed);

        ulong largest = Math.Max(1, Math.Min(chunk, divergent));
        ulong* mine = _localSub.Ensure(largest * (ulong)perPage);
        ulong* theirs = _remoteSub.Ensure(largest * (ulong)perPage);
        ulong* masks = _masks.Ensure(largest);
        ulong* roots = _roots.Ensure(largest);
        ulong* list = _pageList.Pointer;
        for (ulong first = 0; first < divergent; first += chunk)
        {
            ulong end = Math.Min(first + chunk, divergent);
            _workers.Hash(pages, list + first, (long)(end - first), blockBytes, mine);
            Hook(SyncStep.SubBlocksHashed);
            for (ulong from = first; from < end;)
            {
                ulong to = ReceiveSubBlockHashes(connection, request, first, from, end, divergent, blockBytes, hashBytes, theirs, stats);
                for (ulong i = from - first; i < to - first; i++)
                {
                    ulong* a = mine + i * (ulong)perPage, b = theirs + i * (ulong)perPage;
                    ulong m = 0;
                    for (int j = 0; j < perPage; j++)
                        if ((a[j] & keep) != b[j]) m |= 1UL << j;
                    masks[i] = m == 0 ? all : m;
                    roots[i] = SubBlockRoot(a, perPage);
                    stats.SubBlocks += (ulong)BitOperations.PopCount(masks[i]);
                }

                long t = Stopwatch.GetTimestamp();
                for (ulong i = from; i < to; i += (ulong)_options.PagesPerFrame)
                {
                    uint n = (uint)Math.Min((ulong)_options.PagesPerFrame, to - i);
                    if (_putWriter is not null)
                        PutSubBlocks(connection, request, pages, list + i, masks + (i - first), roots + (i - first), mine + (i - first) * (ulong)perPage,
                                     i, n, blockBytes, stats);
                    else
                    {
                        stats.Wire.Pages += connection.Send(_subPagesBody.Set(request.Epoch, pages, list + i, masks + (i - first), roots + (i - first),
                                                                              i, n, blockBytes));
                        stats.PageDataBytes += _subPagesBody.Blocks * (ulong)blockBytes;
                    }
                    Hook(SyncStep.PageBatch);
                }
                transfer += Microseconds(t);
                from = to;
            }
        }
        stats.Pause.Transfer = transfer;
        stats.Pause.SubBlocks = Microseconds(start) - transfer;
    }

    /// <summary>One frame of the backup's sub-block hashes (hashBytes each) of the chunk [first, end): divergent pages
    /// [from, to), into theirs (indexed from first, widened to u64); returns to.</summary>
    private ulong ReceiveSubBlockHashes(SyncConnection connection, SyncRequest request, ulong first, ulong from, ulong end, ulong divergent,
                                        int blockBytes, int hashBytes, ulong* theirs, SyncStats stats)
    {
        int perPage = GuestRamBlock.PageSize / blockBytes;
        var frame = connection.Read(_options.Timeout);
        Expect(frame, FrameType.SyncHashes);
        stats.Wire.Hashes += WireSize(frame);
        var header = _headers.Hashes(frame.Header);
        if (header.Epoch != request.Epoch || header.SubBlockBytes != (uint)blockBytes || header.Total != divergent || header.FirstIndex != from
            || header.Count == 0 || header.Count > end - from || (ulong)frame.Tail.Length != header.Count * (ulong)perPage * (ulong)hashBytes)
            throw new SyncProtocolException($"sub-block hash frame e{header.Epoch} of {header.SubBlockBytes}-byte blocks [{header.FirstIndex}, +{header.Count}) " +
                                            $"of {header.Total} with {frame.Tail.Length} bytes; expected e{request.Epoch}, {blockBytes}-byte blocks from {from} " +
                                            $"to {end} of {divergent}");
        ulong* into = theirs + (from - first) * (ulong)perPage;
        var tail = frame.Tail;
        int n = tail.Length / hashBytes;
        if (hashBytes == 8 && BitConverter.IsLittleEndian) tail.CopyTo(new Span<byte>(into, tail.Length));
        else if (hashBytes == 8) for (int i = 0; i < n; i++) into[i] = BinaryPrimitives.ReadUInt64LittleEndian(tail[(i * 8)..]);
        else if (hashBytes == 4) for (int i = 0; i < n; i++) into[i] = BinaryPrimitives.ReadUInt32LittleEndian(tail[(i * 4)..]);
        else if (hashBytes == 2) for (int i = 0; i < n; i++) into[i] = BinaryPrimitives.ReadUInt16LittleEndian(tail[(i * 2)..]);
        else for (int i = 0; i < n; i++) into[i] = tail[i];
        Hook(SyncStep.SubBlockHashChunk);
        return from + header.Count;
    }

    private void SendPages(SyncConnection connection, SyncRequest request, IPageSource pages, ulong divergent, SyncStats stats)
    {
        ulong* list = _pageList.Pointer;
        for (ulong i = 0; i < divergent; i += (ulong)_options.PagesPerFrame)
        {
            uint count = (uint)Math.Min((ulong)_options.PagesPerFrame, divergent - i);
            stats.Wire.Pages += connection.Send(_pagesBody.Set(request.Epoch, pages, list + i, count));
            stats.PageDataBytes += count * (ulong)GuestRamBlock.PageSize;
            Hook(SyncStep.PageBatch);
        }
    }

    /// <summary>The backup's (key, hash) per section of its own device state, saved at the cut.</summary>
    private void ReceiveDeviceHashes(SyncConnection connection, SyncRequest request, SyncStats stats)
    {
        var frame = connection.Read(_options.Timeout);
        Expect(frame, FrameType.SyncDeviceHashes);
        stats.Wire.DeviceState += WireSize(frame);
        var header = _headers.DeviceHashes(frame.Header);
        if (header.Epoch != request.Epoch)
            throw new SyncProtocolException($"device section hashes for e{header.Epoch}; expected e{request.Epoch}");
        if (!_delta.ReadSummary(frame.Tail, checked((int)Math.Min(header.Count, int.MaxValue)), out string? error))
            throw new SyncProtocolException($"bad device section hashes from the backup: {error}");
        _peerSections = header.Count;
        _peerSummary.Clear();
        frame.Tail.CopyTo(_peerSummary.Append(frame.Tail.Length));
    }

    /// <summary>The device state in chunks (with a delta, the sections the backup lacks or holds with other bytes);
    /// the last chunk (possibly empty) closes the transfer.</summary>
    private void SendDeviceState(SyncConnection connection, SyncRequest request, ulong divergent, SyncStats stats)
    {
        AwaitDeviceSave(stats);
        var state = _deviceState.Memory;
        bool parsed = _deviceSections.Parse(state.Span, out string? error);
        if (!parsed && _syncDeviceDelta && !_sectionsWarned)
        {
            _sectionsWarned = true;
            _log($"sync e{request.Epoch}: the device state is sent whole ({error})");
        }
        uint saved = (uint)_deviceSections.Count, sent = saved;
        bool patched = parsed && _syncDeviceDelta && _peerSections > 0;
        if (patched)
        {
            _deviceDelta.Clear();
            sent = (uint)_delta.WriteDelta(state.Span, _deviceSections, _peerSummary.Data, _deviceDelta);
            state = _deviceDelta.Memory;
        }
        stats.DeviceSections = saved;
        stats.DeviceSectionsSent = sent;
        stats.DeviceStateBytes = (ulong)state.Length;
        ulong total = (ulong)state.Length;
        int offset = 0;
        do
        {
            int n = Math.Min(DeviceStateChunk, state.Length - offset);
            stats.Wire.DeviceState += connection.Send(_deviceBody.Set(request.Epoch, total, (ulong)offset, divergent, sent, saved, patched, state.Slice(offset, n)));
            offset += n;
        } while (offset < state.Length);
    }
}
