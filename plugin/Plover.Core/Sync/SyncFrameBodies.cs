using System.Buffers.Binary;
using System.Numerics;
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

    /// <summary>A side's dirty bitmap (kind DIRTY), with this build's protocol version.</summary>
    public BitmapBody Set(ulong epoch, long logIndex, SyncLayout layout, ulong* words, ulong setBits)
    {
        Fill(epoch, logIndex, layout, words, layout.TotalWords, setBits);
        _header.Kind = BitmapKind.BitmapDirty;
        _header.Protocol = SyncProtocol.Version;
        _header.SubBlockBytes = 0;
        _header.ChunkPages = 0;
        _header.SubBlockHashBytes = 0;
        Seal();
        return this;
    }

    /// <summary>The primary's divergent list (kind DIVERGENT): bit k of words = the k-th union page diverges.</summary>
    public BitmapBody SetDivergent(ulong epoch, long logIndex, SyncLayout layout, ulong* words, ulong wordCount, ulong setBits,
                                   int subBlockBytes, int chunkPages, int hashBytes)
    {
        Fill(epoch, logIndex, layout, words, wordCount, setBits);
        _header.Kind = BitmapKind.BitmapDivergent;
        _header.Protocol = SyncProtocol.Version;
        _header.SendAll = false;
        _header.SubBlockBytes = (uint)subBlockBytes;
        _header.ChunkPages = (uint)chunkPages;
        _header.SubBlockHashBytes = (uint)hashBytes;
        Seal();
        return this;
    }

    /// <summary>The backup's REPAIR list (kind REPAIR): bit k of words = the k-th divergent page failed its check.</summary>
    public BitmapBody SetRepair(ulong epoch, long logIndex, SyncLayout layout, ulong* words, ulong wordCount, ulong setBits)
    {
        Fill(epoch, logIndex, layout, words, wordCount, setBits);
        _header.Kind = BitmapKind.BitmapRepair;
        _header.Protocol = SyncProtocol.Version;
        _header.SendAll = false;
        _header.SubBlockBytes = 0;
        _header.ChunkPages = 0;
        _header.SubBlockHashBytes = 0;
        Seal();
        return this;
    }

    private void Fill(ulong epoch, long logIndex, SyncLayout layout, ulong* words, ulong wordCount, ulong setBits)
    {
        var encoding = BitmapCodec.Choose(words, wordCount, out long size);
        if (size > FrameFormat.DefaultMaxFrameBytes / 2) throw new InvalidOperationException($"bitmap of {size} bytes does not fit in a frame");
        _header.Epoch = epoch;
        _header.LogIndex = logIndex;
        _header.Encoding = encoding;
        _header.TotalWords = wordCount;
        _header.LayoutHash = layout.Hash;
        _header.SetBits = setBits;
        _words = words;
        _tailLength = (int)size;
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
    private int _perItem = 1;
    private int _hashBytes = 8;
    public override int TailLength => (int)_header.Count * _perItem * _hashBytes;

    /// <summary>Page hashes of union pages [first, first + count) of total; hashes points at union page 0's.</summary>
    public HashesBody Set(ulong epoch, ulong* hashes, ulong first, uint count, ulong total)
    {
        _header.Epoch = epoch;
        _header.FirstIndex = first;
        _header.Count = count;
        _header.Total = total;
        _header.SubBlockBytes = 0;
        _perItem = 1;
        _hashBytes = 8;
        _hashes = hashes + first;
        Seal();
        return this;
    }

    /// <summary>Sub-block hashes of divergent pages [first, first + count) of total, each shortened to its low
    /// hashBytes bytes; hashes points at page first's.</summary>
    public HashesBody SetSubBlocks(ulong epoch, ulong* hashes, ulong first, uint count, ulong total, int subBlockBytes, int hashBytes)
    {
        _hashBytes = hashBytes;
        _header.Epoch = epoch;
        _header.FirstIndex = first;
        _header.Count = count;
        _header.Total = total;
        _header.SubBlockBytes = (uint)subBlockBytes;
        _perItem = GuestRamBlock.PageSize / subBlockBytes;
        _hashes = hashes;
        Seal();
        return this;
    }

    protected override void WriteTail(Span<byte> tail)
    {
        int n = TailLength / _hashBytes;
        if (_hashBytes == 8 && BitConverter.IsLittleEndian) new ReadOnlySpan<byte>(_hashes, TailLength).CopyTo(tail);
        else if (_hashBytes == 8) for (int i = 0; i < n; i++) BinaryPrimitives.WriteUInt64LittleEndian(tail[(i * 8)..], _hashes[i]);
        else if (_hashBytes == 4) for (int i = 0; i < n; i++) BinaryPrimitives.WriteUInt32LittleEndian(tail[(i * 4)..], (uint)_hashes[i]);
        else if (_hashBytes == 2) for (int i = 0; i < n; i++) BinaryPrimitives.WriteUInt16LittleEndian(tail[(i * 2)..], (ushort)_hashes[i]);
        else for (int i = 0; i < n; i++) tail[i] = (byte)_hashes[i];
    }
}

/// <summary>Frame 34: a batch of divergent pages copied once, straight from guest RAM (or the primary's snapshot of
/// the union) into the send buffer.</summary>
internal sealed unsafe class PagesBody : SyncFrameBody
{
    private readonly SyncPages _header = new();
    private IPageSource _source = null!;
    private ulong* _pages;

    public override FrameType Type => FrameType.SyncPages;
    protected override IMessage Header => _header;
    public override int TailLength => (int)_header.Count * (8 + GuestRamBlock.PageSize);

    public PagesBody Set(ulong epoch, IPageSource source, ulong* pageNumbers, uint count)
    {
        _header.Epoch = epoch;
        _header.Count = count;
        _header.SubBlockBytes = 0;
        _header.FirstIndex = 0;
        _header.Blocks = 0;
        _source = source;
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
            new ReadOnlySpan<byte>(_source.PageAddress(_pages[i]), GuestRamBlock.PageSize).CopyTo(data[(i * GuestRamBlock.PageSize)..]);
    }
}

/// <summary>Frame 34 in sub-block mode: divergent pages [first, first + count) of the divergent list, each as its mask,
/// its root (SyncEngine.SubBlockRoot) and the sub-blocks the mask names, copied straight from guest RAM (or the snapshot) into the send buffer.</summary>
internal sealed unsafe class SubBlockPagesBody : SyncFrameBody
{
    private readonly SyncPages _header = new();
    private IPageSource _source = null!;
    private ulong* _pages;
    private ulong* _masks;
    private ulong* _roots;
    private int _blockBytes;
    private int _tailLength;

    public override FrameType Type => FrameType.SyncPages;
    protected override IMessage Header => _header;
    public override int TailLength => _tailLength;

    /// <summary>Bytes of one page's mask on the wire: one bit per sub-block, rounded up to whole bytes.</summary>
    public static int MaskBytes(int blockBytes) => (GuestRamBlock.PageSize / blockBytes + 7) / 8;

    /// <summary>What precedes a page's sub-blocks (or their hashes, for a put): its mask and its root.</summary>
    public static int PageHeadBytes(int blockBytes) => MaskBytes(blockBytes) + 8;

    /// <summary>pages, masks and roots point at the first page's entry.</summary>
    public SubBlockPagesBody Set(ulong epoch, IPageSource source, ulong* pages, ulong* masks, ulong* roots, ulong first, uint count, int blockBytes)
    {
        int maskBytes = MaskBytes(blockBytes);
        ulong blocks = 0;
        for (uint i = 0; i < count; i++) blocks += (ulong)BitOperations.PopCount(masks[i]);
        _header.Epoch = epoch;
        _header.Count = count;
        _header.SubBlockBytes = (uint)blockBytes;
        _header.FirstIndex = first;
        _header.Blocks = (uint)blocks;
        _source = source;
        _pages = pages;
        _masks = masks;
        _roots = roots;
        _blockBytes = blockBytes;
        _tailLength = checked((int)(count * (ulong)(maskBytes + 8) + blocks * (ulong)blockBytes));
        Seal();
        return this;
    }

    public ulong Blocks => _header.Blocks;

    protected override void WriteTail(Span<byte> tail)
    {
        int maskBytes = MaskBytes(_blockBytes);
        int at = 0;
        Span<byte> mask = stackalloc byte[8];
        for (uint i = 0; i < _header.Count; i++)
        {
            ulong m = _masks[i];
            BinaryPrimitives.WriteUInt64LittleEndian(mask, m);
            mask[..maskBytes].CopyTo(tail[at..]);
            at += maskBytes;
            BinaryPrimitives.WriteUInt64LittleEndian(tail[at..], _roots[i]);
            at += 8;
            byte* page = _source.PageAddress(_pages[i]);
            while (m != 0)
            {
                int j = BitOperations.TrailingZeroCount(m);
                m &= m - 1;
                new ReadOnlySpan<byte>(page + j * _blockBytes, _blockBytes).CopyTo(tail[at..]);
                at += _blockBytes;
            }
        }
        if (at != _tailLength) throw new InvalidOperationException($"sub-block frame wrote {at} bytes, sized {_tailLength}");
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

    public DeviceStateBody Set(ulong epoch, ulong total, ulong offset, ulong pagesSent, uint sections, uint sectionsSaved, bool patched,
                               ReadOnlyMemory<byte> chunk)
    {
        _header.Patched = patched;
        _header.Epoch = epoch;
        _header.TotalLength = total;
        _header.Offset = offset;
        _header.PagesSent = pagesSent;
        _header.Sections = sections;
        _header.SectionsSaved = sectionsSaved;
        _chunk = chunk;
        Seal();
        return this;
    }

    protected override void WriteTail(Span<byte> tail) => _chunk.Span.CopyTo(tail);
}

/// <summary>Frame 39: the backup's summary of its device state sections (<see cref="DeviceStateDelta"/>).</summary>
internal sealed class DeviceHashesBody : SyncFrameBody
{
    private readonly SyncDeviceHashes _header = new();
    private DeviceStateSections _sections = null!;
    private ReadOnlyMemory<byte> _state;
    private int _tailLength;

    public override FrameType Type => FrameType.SyncDeviceHashes;
    protected override IMessage Header => _header;
    public override int TailLength => _tailLength;

    public DeviceHashesBody Set(ulong epoch, ReadOnlyMemory<byte> state, DeviceStateSections sections)
    {
        _header.Epoch = epoch;
        _header.Count = (uint)sections.Count;
        _state = state;
        _sections = sections;
        _tailLength = DeviceStateDelta.SummaryLength(sections);
        Seal();
        return this;
    }

    protected override void WriteTail(Span<byte> tail) => DeviceStateDelta.WriteSummary(_state.Span, _sections, tail);
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
