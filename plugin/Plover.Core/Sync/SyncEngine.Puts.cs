using System.Numerics;
using Google.Protobuf;
using Plover.Hashing;
using Plover.Transport;
using Plover.Transport.Ucx;
using Plover.Wire;

namespace Plover.Sync;

/// <summary>
/// UCX page puts ("ucx": {"pagePuts": true}): the backup offers its staging buffer (SyncStaging, right after the
/// bitmaps) and the primary writes each batch of divergent pages or sub-blocks straight into it with ucp_put (an RDMA
/// WRITE on RDMA hardware), flushes, and only then sends the batch's completion frame (<see cref="PutCompletionBody"/>).
/// Staging slots are the offsets the stream path stages at (whole pages: the n-th page at n * 4096; sub-blocks:
/// packed in list order), so the apply is the same. The backup reads a slot only after its completion frame and
/// checks it against the primary's hash there: a put bypasses the stream's MAC and encryption, so a garbled or stray
/// write fails the sync (closed) instead of reaching guest RAM. Every abort path is the stream path's.
/// </summary>
public sealed unsafe partial class SyncEngine
{
    private readonly StagingRegion _stagingRegion = new();
    private readonly PutCompletionBody _putBody = new();
    private readonly NativeBuffer<ulong> _pageHashes = new();   // primary: its hash of each divergent page (list order)
    private readonly NativeBuffer<byte> _putGather = new();     // primary, sub-blocks: one batch's sub-blocks, packed
    private UcxRemoteWriter? _putWriter;                         // primary: this sync puts pages (null: frames)
    private ulong _putOffered;                                   // backup: staging bytes offered this sync (0: none)
    private ulong _putOffset;                                    // primary, sub-blocks: where the next batch goes

    /// <summary>Backup: staging registrations so far (tests: once per growth, not per sync).</summary>
    internal int StagingRegistrations => _stagingRegion.Registrations;

    /// <summary>Backup: the staging buffer (tests scribble on it to play a garbled put).</summary>
    internal byte* StagingPointer => _staging.Pointer;

    /// <summary>Staging memory for bytes; the registration goes first if the buffer is reallocated.</summary>
    private byte* EnsureStaging(ulong bytes)
    {
        if (bytes > _staging.Capacity) _stagingRegion.Drop();
        return _staging.Ensure(bytes);
    }

    private void ReleaseStaging()
    {
        _stagingRegion.Drop();
        _staging.Release();
    }

    /// <summary>Backup, over UCX: offers the staging buffer for this sync's puts (an empty key: none, frames as
    /// over TCP). Offered only where the primary has a hash of every page it sends: not in a checkpoint.</summary>
    private void OfferStaging(SyncConnection connection, SyncRequest request, ulong unionPages, SyncStats stats)
    {
        _putOffered = 0;
        var offer = new SyncStaging { Epoch = request.Epoch };
        if (connection.Ucx is { Settings.PagePuts: true } worker && !_syncCheckpoint && unionPages > 0)
        {
            byte* buffer = EnsureStaging(unionPages * GuestRamBlock.PageSize);
            var (key, address, length) = _stagingRegion.Offer(worker, buffer, _staging.Capacity);
            offer.Key = ByteString.CopyFrom(key);
            offer.Address = address;
            offer.Length = length;
            _putOffered = length;
        }
        stats.Wire.Control += connection.Send(_controlBody.Set(FrameType.SyncStaging, offer));
    }

    /// <summary>Primary, over UCX: the backup's offer; sets <see cref="_putWriter"/> if it made one.</summary>
    private void ReceiveStagingOffer(SyncConnection connection, SyncRequest request, ulong unionPages, SyncStats stats)
    {
        _putWriter = null;
        _putOffset = 0;
        var frame = connection.Read(_options.Timeout);
        Expect(frame, FrameType.SyncStaging);
        stats.Wire.Control += WireSize(frame);
        SyncStaging offer;
        try { offer = SyncStaging.Parser.ParseFrom(frame.Header); }
        catch (InvalidProtocolBufferException e) { throw new SyncProtocolException($"malformed SyncStaging: {e.Message}"); }
        if (offer.Epoch != request.Epoch) throw new SyncProtocolException($"staging offer for e{offer.Epoch}; expected e{request.Epoch}");
        if (offer.Key.IsEmpty || _syncCheckpoint) return;
        if (offer.Address == 0 || offer.Length < unionPages * GuestRamBlock.PageSize)
            throw new SyncProtocolException($"the backup's staging region of {offer.Length} bytes at {offer.Address:x} cannot hold the {unionPages} pages of the union");
        try { _putWriter = connection.StagingWriter(offer.Key.Span, offer.Address, offer.Length); }
        catch (IOException e) when (!connection.IsClosed)
        {
            throw new SyncProtocolException($"the backup's staging key does not unpack ({e.Message}): the sync is aborted");
        }
    }

    /// <summary>Primary, whole pages: per batch (<see cref="SyncOptions.PutPagesPerBatch"/>), one put (straight from the
    /// source when the batch's pages are adjacent there, as in an early resume's copy; else gathered first, as the
    /// stream path copies them into its frame), a flush, then the completion frame with the pages' numbers and hashes.
    /// One put per batch rather than per page: UCX's TCP emulation pays per put (62,000 puts of scattered pages moved
    /// 176 MiB/s here), and on RDMA one large WRITE costs less than many 4 KiB ones.</summary>
    private void PutPages(SyncConnection connection, SyncRequest request, IPageSource pages, ulong divergent, SyncStats stats)
    {
        var writer = _putWriter!;
        ulong* list = _pageList.Pointer;
        ulong* hashes = _pageHashes.Pointer;
        int timeoutMs = (int)_options.Timeout.TotalMilliseconds;
        ulong batch = (ulong)_options.PutPagesPerBatch;
        for (ulong i = 0; i < divergent; i += batch)
        {
            uint count = (uint)Math.Min(batch, divergent - i);
            int bytes = checked((int)count * GuestRamBlock.PageSize);
            byte* start = pages.PageAddress(list[i]);
            uint adjacent = 1;
            while (adjacent < count && pages.PageAddress(list[i + adjacent]) == start + adjacent * (ulong)GuestRamBlock.PageSize) adjacent++;
            if (adjacent < count)
            {
                byte* gather = _putGather.Ensure(batch * GuestRamBlock.PageSize);
                for (uint k = 0; k < count; k++)
                    Buffer.MemoryCopy(pages.PageAddress(list[i + k]), gather + k * (ulong)GuestRamBlock.PageSize, GuestRamBlock.PageSize, GuestRamBlock.PageSize);
                start = gather;
            }
            writer.Put(start, bytes, i * GuestRamBlock.PageSize);
            stats.Puts++;
            writer.Flush(timeoutMs, connection.PeerGone);
            stats.PutBytes += (ulong)bytes;
            Hook(SyncStep.PagesPut);
            stats.Wire.Pages += connection.Send(_putBody.SetPages(request.Epoch, list + i, hashes + i, count));
            stats.PageDataBytes += (ulong)bytes;
            Hook(SyncStep.PageBatch);
        }
    }

    /// <summary>Primary, sub-blocks: divergent pages [from, from + count) (list and masks point at from's entry,
    /// subHashes at its sub-block hashes): their set sub-blocks gathered, put as one run where the previous batch
    /// ended, flushed, then the completion frame with the masks and the sub-blocks' hashes.</summary>
    private void PutSubBlocks(SyncConnection connection, SyncRequest request, IPageSource pages, ulong* list, ulong* masks, ulong* roots, ulong* subHashes,
                              ulong from, uint count, int blockBytes, SyncStats stats)
    {
        byte* gather = _putGather.Ensure(Math.Max((ulong)_options.PagesPerFrame, (ulong)_options.PutPagesPerBatch) * GuestRamBlock.PageSize);
        int bytes = 0;
        for (uint i = 0; i < count; i++)
        {
            byte* page = pages.PageAddress(list[i]);
            for (ulong m = masks[i]; m != 0; m &= m - 1, bytes += blockBytes)
                Buffer.MemoryCopy(page + BitOperations.TrailingZeroCount(m) * blockBytes, gather + bytes, blockBytes, blockBytes);
        }
        _putWriter!.Put(gather, bytes, _putOffset);
        stats.Puts++;
        _putWriter.Flush((int)_options.Timeout.TotalMilliseconds, connection.PeerGone);
        _putOffset += (ulong)bytes;
        stats.PutBytes += (ulong)bytes;
        Hook(SyncStep.PagesPut);
        stats.Wire.Pages += connection.Send(_putBody.SetSubBlocks(request.Epoch, masks, roots, subHashes, from, count, blockBytes));
        stats.PageDataBytes += (ulong)bytes;
    }

    /// <summary>Backup: a completion frame names data put into staging; it must have been offered this sync.</summary>
    private void ExpectOffered(ulong end)
    {
        if (_putOffered == 0) throw new SyncProtocolException("the primary announced put pages, but this backup offered no staging region in this sync");
        if (end > _putOffered) throw new SyncProtocolException($"the primary's puts reach byte {end} of the {_putOffered}-byte staging region");
    }

    /// <summary>Backup: the staged page at slot checked against the primary's hash (fail closed).</summary>
    private void VerifyPutPage(ulong slot, ulong page, ulong hash)
    {
        if (CityHash.Hash64(_staging.Pointer + slot * GuestRamBlock.PageSize, GuestRamBlock.PageSize) != hash)
            throw new SyncProtocolException($"page {page} put into staging slot {slot} does not match the primary's hash (a garbled or stray one-sided write)");
    }

    /// <summary>Backup: a staged sub-block checked against the primary's hash (fail closed).</summary>
    private void VerifyPutSubBlock(ulong offset, int blockBytes, ulong hash, ulong index)
    {
        if (CityHash.Hash64(_staging.Pointer + offset, (nuint)blockBytes) != hash)
            throw new SyncProtocolException($"a sub-block of divergent page {index} put at staging offset {offset} does not match the primary's hash " +
                                            "(a garbled or stray one-sided write)");
    }
}
