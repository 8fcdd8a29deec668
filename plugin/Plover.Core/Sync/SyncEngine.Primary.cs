using System.Diagnostics;
using System.Numerics;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Sync;

public sealed unsafe partial class SyncEngine
{
    private void RunPrimary(SyncConnection connection, SyncRequest request, SyncStats stats)
    {
        StopVm(request, stats);

        // Bitmaps: the backup sends first, we OR and answer with ours (one direction at a time: no deadlock).
        long t = Stopwatch.GetTimestamp();
        stats.LocalDirtyPages = GatherLocalBitmap();
        ulong unionPages = ReceiveBitmap(connection, request, stats);
        SendBitmap(connection, request, stats.LocalDirtyPages, stats);
        stats.UnionPages = unionPages;
        stats.Pause.Bitmap = Microseconds(t);
        Hook(SyncStep.BitmapsExchanged);

        // Hashes: ours in parallel with the backup's, then theirs arrive in union page order.
        t = Stopwatch.GetTimestamp();
        if (!_options.Checkpoint)
        {
            HashUnion(unionPages);
            ReceiveHashes(connection, request, unionPages, stats);
        }
        stats.Pause.Hash = Microseconds(t);

        t = Stopwatch.GetTimestamp();
        ulong divergent = CompareHashes(unionPages);
        stats.DivergentPages = divergent;
        stats.IdenticalPages = unionPages - divergent;
        stats.Pause.Compare = Microseconds(t);

        t = Stopwatch.GetTimestamp();
        SendPages(connection, request, divergent, stats);
        stats.Pause.Transfer = Microseconds(t);
        Hook(SyncStep.BeforeDeviceState);

        t = Stopwatch.GetTimestamp();
        SendDeviceState(connection, request, divergent, stats);
        stats.Pause.DeviceState += Microseconds(t);
        Hook(SyncStep.BeforeApply);

        // The backup applies and acks; only then may this epoch's output leave.
        t = Stopwatch.GetTimestamp();
        var frame = connection.Read(_options.Timeout);
        Expect(frame, FrameType.SyncAck);
        stats.Wire.Control += WireSize(frame);
        var ack = SyncAck.Parser.ParseFrom(frame.Header);
        if (ack.Epoch != request.Epoch || ack.PagesApplied != divergent)
            throw new SyncProtocolException($"ack for e{ack.Epoch} with {ack.PagesApplied} pages; expected e{request.Epoch} with {divergent}");
        stats.Pause.Apply = Microseconds(t);
        RunSyncPointAction(request);

        t = Stopwatch.GetTimestamp();
        _main.Invoke(() =>
        {
            _vm.DirtyClear();
            _vm.Start();
            _vmStopped = false;
            stats.OutputUtc = DateTime.UtcNow;
            stats.OutputFrames = _guard?.EpochSynced(request.Epoch) ?? 0;   // after vm_start: frames leave only while running
        });
        stats.Pause.Resume = Microseconds(t);
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
            var header = SyncHashes.Parser.ParseFrom(frame.Header);
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
    /// send-all mode), in page order; returns how many.</summary>
    private ulong CompareHashes(ulong unionPages)
    {
        var layout = _layout!;
        ulong* union = _union.Pointer;
        ulong* list = _pageList.Ensure(Math.Max(unionPages, 1));
        ulong* mine = _localHashes.Pointer;
        ulong* theirs = _remoteHashes.Pointer;
        bool all = _options.Checkpoint;
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
                if (all || mine[k] != theirs[k]) list[n++] = w * 64 + (ulong)bit;
                k++;
                bits &= bits - 1;
            }
        }
        return n;
    }

    private void SendPages(SyncConnection connection, SyncRequest request, ulong divergent, SyncStats stats)
    {
        ulong* list = _pageList.Pointer;
        for (ulong i = 0; i < divergent; i += (ulong)_options.PagesPerFrame)
        {
            uint count = (uint)Math.Min((ulong)_options.PagesPerFrame, divergent - i);
            stats.Wire.Pages += connection.Send(_pagesBody.Set(request.Epoch, _layout!, list + i, count));
            Hook(SyncStep.PageBatch);
        }
    }

    /// <summary>The full device state in chunks; the last chunk (possibly empty) closes the transfer.</summary>
    private void SendDeviceState(SyncConnection connection, SyncRequest request, ulong divergent, SyncStats stats)
    {
        var state = _deviceState.Memory;
        ulong total = (ulong)state.Length;
        int offset = 0;
        do
        {
            int n = Math.Min(DeviceStateChunk, state.Length - offset);
            stats.Wire.DeviceState += connection.Send(_deviceBody.Set(request.Epoch, total, (ulong)offset, divergent, state.Slice(offset, n)));
            offset += n;
        } while (offset < state.Length);
    }
}
