using Google.Protobuf;
using Plover.Wire;

namespace Plover.Sync;

/// <summary>
/// Parses the protobuf headers of the sync frames that come per page batch or chunk into one reused instance per
/// message type, so receiving allocates nothing per frame (ParseFrom would build a message each time). Generated
/// messages have no Clear and proto3 omits default fields, so every field is reset by hand before the merge
/// (SyncHeadersTests checks that none is forgotten). A header is valid until the next one of its type. Throws
/// InvalidProtocolBufferException on a malformed header. Engine thread only.
/// </summary>
internal sealed class SyncHeaders
{
    private readonly SyncBitmap _bitmap = new();
    private readonly SyncHashes _hashes = new();
    private readonly SyncPages _pages = new();
    private readonly SyncDeviceState _deviceState = new();
    private readonly SyncAck _ack = new();
    private readonly SyncDeviceHashes _deviceHashes = new();
    private readonly SyncDisk _disk = new();

    public SyncDisk Disk(ReadOnlySpan<byte> header)
    {
        var h = _disk;
        h.Epoch = 0; h.Part = DiskPart.DiskBitmap; h.LayoutHash = 0; h.Total = 0; h.FirstIndex = 0; h.Count = 0; h.ChunkFirst = 0;
        h.Encoding = BitmapEncoding.BitmapRaw; h.SetBits = 0;
        h.MergeFrom(header);
        return h;
    }

    public SyncBitmap Bitmap(ReadOnlySpan<byte> header)
    {
        var h = _bitmap;
        h.Epoch = 0; h.LogIndex = 0; h.Encoding = BitmapEncoding.BitmapRaw; h.TotalWords = 0; h.LayoutHash = 0; h.SetBits = 0;
        h.SendAll = false; h.Protocol = 0; h.Kind = BitmapKind.BitmapDirty; h.SubBlockBytes = 0; h.ChunkPages = 0; h.SubBlockHashBytes = 0;
        h.MergeFrom(header);
        return h;
    }

    public SyncHashes Hashes(ReadOnlySpan<byte> header)
    {
        var h = _hashes;
        h.Epoch = 0; h.FirstIndex = 0; h.Count = 0; h.Total = 0; h.SubBlockBytes = 0;
        h.MergeFrom(header);
        return h;
    }

    public SyncPages Pages(ReadOnlySpan<byte> header)
    {
        var h = _pages;
        h.Epoch = 0; h.Count = 0; h.SubBlockBytes = 0; h.FirstIndex = 0; h.Blocks = 0; h.Put = false;
        h.MergeFrom(header);
        return h;
    }

    public SyncDeviceState DeviceState(ReadOnlySpan<byte> header)
    {
        var h = _deviceState;
        h.Epoch = 0; h.TotalLength = 0; h.Offset = 0; h.PagesSent = 0; h.Sections = 0; h.SectionsSaved = 0; h.Patched = false;
        h.MergeFrom(header);
        return h;
    }

    public SyncDeviceHashes DeviceHashes(ReadOnlySpan<byte> header)
    {
        var h = _deviceHashes;
        h.Epoch = 0; h.Count = 0;
        h.MergeFrom(header);
        return h;
    }

    public SyncAck Ack(ReadOnlySpan<byte> header)
    {
        var h = _ack;
        h.Epoch = 0; h.PagesApplied = 0; h.DiskBlocksApplied = 0;
        h.MergeFrom(header);
        return h;
    }
}
