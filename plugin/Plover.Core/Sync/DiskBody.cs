using System.Buffers.Binary;
using Google.Protobuf;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Sync;

/// <summary>Frame 42: the disk part of a sync (proto/sync.proto SyncDisk): a side's dirty-block bitmap, union block
/// hashes of a chunk, or a chunk's divergent blocks, written in place from <see cref="DiskBlocks"/>.</summary>
internal sealed unsafe class DiskBody : SyncFrameBody
{
    private const int BlockSize = GuestRamBlock.PageSize;
    private readonly SyncDisk _header = new();
    private DiskBlocks? _blocks;             // its bitmap, hashes or divergent blocks go into the tail
    private int _tailLength;

    public override FrameType Type => FrameType.SyncDisk;
    protected override IMessage Header => _header;
    public override int TailLength => _tailLength;

    /// <summary>This side's dirty-block bitmap (<see cref="DiskBlocks.LocalBitmap"/>), in the smallest of
    /// <see cref="BitmapCodec"/>'s forms: raw, a 1 GiB drive's bitmap is 32 KiB per sync each way, for the few
    /// blocks a guest usually writes between syncs.</summary>
    public DiskBody SetBitmap(ulong epoch, DiskBlocks blocks)
    {
        ulong words = blocks.Layout.TotalWords;
        Fill(epoch, blocks, DiskPart.DiskBitmap, blocks.Layout.Hash, words, 0, 0);
        _header.Encoding = BitmapCodec.Choose(blocks.LocalBitmapPointer, words, out long size);
        _header.SetBits = blocks.LocalBlocks;
        _tailLength = checked((int)size);
        return Sealed();
    }

    /// <summary>Union block hashes [first, first + count), union indices within the current chunk (<see cref="DiskBlocks.Hashes"/>).</summary>
    public DiskBody SetHashes(ulong epoch, DiskBlocks blocks, ulong first, uint count)
    {
        Fill(epoch, blocks, DiskPart.DiskHashes, 0, blocks.UnionBlocks, first, count);
        _tailLength = (int)count * 8;
        return Sealed();
    }

    /// <summary>The current chunk's divergent blocks [first, first + count) (count 0: the chunk has none).</summary>
    public DiskBody SetBlocks(ulong epoch, DiskBlocks blocks, ulong first, uint count)
    {
        Fill(epoch, blocks, DiskPart.DiskBlocks, 0, blocks.DivergentBlocks, first, count);
        _tailLength = (int)count * (8 + BlockSize);
        return Sealed();
    }

    private void Fill(ulong epoch, DiskBlocks blocks, DiskPart part, ulong layoutHash, ulong total, ulong first, uint count)
    {
        _header.Epoch = epoch;
        _header.Part = part;
        _header.LayoutHash = layoutHash;
        _header.Total = total;
        _header.FirstIndex = first;
        _header.Count = count;
        _header.ChunkFirst = part == DiskPart.DiskBitmap ? 0 : blocks.ChunkFirst;
        _header.Encoding = BitmapEncoding.BitmapRaw;
        _header.SetBits = 0;
        _blocks = blocks;
    }

    private DiskBody Sealed()
    {
        Seal();
        return this;
    }

    protected override void WriteTail(Span<byte> tail)
    {
        if (_header.Part == DiskPart.DiskBitmap)
        {
            int n = BitmapCodec.Encode(_blocks!.LocalBitmapPointer, _header.Total, _header.Encoding, tail);
            if (n != _tailLength) throw new InvalidOperationException($"disk bitmap encoder wrote {n} bytes, sized {_tailLength}");
            return;
        }
        if (_header.Part == DiskPart.DiskHashes)
        {
            ReadOnlySpan<ulong> words = _blocks!.Hashes.Slice((int)(_header.FirstIndex - _header.ChunkFirst), (int)_header.Count);
            for (int i = 0; i < words.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(tail[(i * 8)..], words[i]);
            return;
        }
        int at = 0;
        for (ulong i = _header.FirstIndex; i < _header.FirstIndex + _header.Count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(tail[at..], _blocks!.DivergentBlock(i));
            _blocks.DivergentData(i).CopyTo(tail[(at + 8)..]);
            at += 8 + BlockSize;
        }
    }
}
