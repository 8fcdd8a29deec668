using System.Buffers.Binary;
using Google.Protobuf;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Sync;

/// <summary>A sync frame body: a reused protobuf header plus a raw tail written in place (no staging copy).
/// One instance per kind per engine, refilled per frame, so sending allocates nothing.</summary>
internal abstract class SyncFrameBody : IFrameBody
{
    private int _headerSize;

    public abstract FrameType Type { get; }
    protected abstract IMessage Header { get; }
    public abstract int TailLength { get; }
    public int Length => FrameBody.Size(_headerSize, TailLength);

    /// <summary>Call after setting the header's fields.</summary>
    protected void Seal() => _headerSize = Header.CalculateSize();

    public void Write(Span<byte> destination)
    {
        FrameBody.WriteHeaderLength(destination, _headerSize);
        Header.WriteTo(destination.Slice(4, _headerSize));
        WriteTail(destination[(4 + _headerSize)..]);
    }

    protected abstract void WriteTail(Span<byte> tail);
}

/// <summary>Frame 32: one side's dirty bitmap, encoded straight from the gathered words.</summary>
internal sealed unsafe class BitmapBody : SyncFrameBody
{
    private readonly SyncBitmap _header = new();
    private ulong* _words;
    private int _tailLength;

    public override FrameType Type => FrameType.SyncBitmap;
    protected override IMessage Header => _header;
    public override int TailLength => _tailLength;

    public BitmapBody Set(ulong epoch, long logIndex, SyncLayout layout, ulong* words, ulong setBits)
    {
        var encoding = BitmapCodec.Choose(words, layout.TotalWords, out long size);
        if (size > FrameFormat.DefaultMaxFrameBytes / 2) throw new InvalidOperationException($"bitmap of {size} bytes does not fit in a frame");
        _header.Epoch = epoch;
        _header.LogIndex = logIndex;
        _header.Encoding = encoding;
        _header.TotalWords = layout.TotalWords;
        _header.LayoutHash = layout.Hash;
        _header.SetBits = setBits;
        _words = words;
        _tailLength = (int)size;
        Seal();
        return this;
    }

    public BitmapEncoding Encoding => _header.Encoding;

    public void SetSendAll(bool sendAll)
    {
        _header.SendAll = sendAll;
        Seal();
    }

    protected override void WriteTail(Span<byte> tail)
    {
        int n = BitmapCodec.Encode(_words, _header.TotalWords, _header.Encoding, tail);
        if (n != _tailLength) throw new InvalidOperationException($"bitmap encoder wrote {n} bytes, sized {_tailLength}");
    }
}

/// <summary>Frame 33: a run of the backup's union hashes, in union page order.</summary>
internal sealed unsafe class HashesBody : SyncFrameBody
{
    private readonly SyncHashes _header = new();
    private ulong* _hashes;

    public override FrameType Type => FrameType.SyncHashes;
    protected override IMessage Header => _header;
    public override int TailLength => (int)_header.Count * 8;

    public HashesBody Set(ulong epoch, ulong* hashes, ulong first, uint count, ulong total)
    {
        _header.Epoch = epoch;
        _header.FirstIndex = first;
        _header.Count = count;
        _header.Total = total;
        _hashes = hashes + first;
        Seal();
        return this;
    }

    protected override void WriteTail(Span<byte> tail)
    {
        var source = new ReadOnlySpan<byte>(_hashes, TailLength);
        if (BitConverter.IsLittleEndian) source.CopyTo(tail);
        else for (int i = 0; i < _header.Count; i++) BinaryPrimitives.WriteUInt64LittleEndian(tail[(i * 8)..], _hashes[i]);
    }
}

/// <summary>Frame 34: a batch of divergent pages copied once, straight from guest RAM into the send buffer.</summary>
internal sealed unsafe class PagesBody : SyncFrameBody
{
    private readonly SyncPages _header = new();
    private SyncLayout _layout = null!;
    private ulong* _pages;

    public override FrameType Type => FrameType.SyncPages;
    protected override IMessage Header => _header;
    public override int TailLength => (int)_header.Count * (8 + GuestRamBlock.PageSize);

    public PagesBody Set(ulong epoch, SyncLayout layout, ulong* pageNumbers, uint count)
    {
        _header.Epoch = epoch;
        _header.Count = count;
        _layout = layout;
        _pages = pageNumbers;
        Seal();
        return this;
    }

    protected override void WriteTail(Span<byte> tail)
    {
        int count = (int)_header.Count;
        for (int i = 0; i < count; i++) BinaryPrimitives.WriteUInt64LittleEndian(tail[(i * 8)..], _pages[i]);
        var data = tail[(count * 8)..];
        for (int i = 0; i < count; i++)
            new ReadOnlySpan<byte>(_layout.PageAddress(_pages[i]), GuestRamBlock.PageSize).CopyTo(data[(i * GuestRamBlock.PageSize)..]);
    }
}

/// <summary>Frame 35: a chunk of the device state.</summary>
internal sealed class DeviceStateBody : SyncFrameBody
{
    private readonly SyncDeviceState _header = new();
    private ReadOnlyMemory<byte> _chunk;

    public override FrameType Type => FrameType.SyncDeviceState;
    protected override IMessage Header => _header;
    public override int TailLength => _chunk.Length;

    public DeviceStateBody Set(ulong epoch, ulong total, ulong offset, ulong pagesSent, ReadOnlyMemory<byte> chunk)
    {
        _header.Epoch = epoch;
        _header.TotalLength = total;
        _header.Offset = offset;
        _header.PagesSent = pagesSent;
        _chunk = chunk;
        Seal();
        return this;
    }

    protected override void WriteTail(Span<byte> tail) => _chunk.Span.CopyTo(tail);
}

/// <summary>Frames 36 and 37: small control messages with no tail.</summary>
internal sealed class ControlBody : SyncFrameBody
{
    private IMessage _header = null!;
    private FrameType _type;

    public override FrameType Type => _type;
    protected override IMessage Header => _header;
    public override int TailLength => 0;

    public ControlBody Set(FrameType type, IMessage header)
    {
        _type = type;
        _header = header;
        Seal();
        return this;
    }

    protected override void WriteTail(Span<byte> tail) { }
}
