using System.Buffers.Binary;
using Google.Protobuf;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Sync;

/// <summary>Frame 41: the disk part of a sync (proto/sync.proto SyncDisk): a side's dirty-block bitmap, union block
/// hashes, or divergent blocks, written in place from <see cref="DiskBlocks"/>.</summary>
internal sealed unsafe class DiskBody : SyncFrameBody
{
    private const int BlockSize = GuestRamBlock.PageSize;
    private readonly SyncDisk _header = new();
    private ReadOnlyMemory<ulong> _words;   // bitmap or hashes
    private DiskBlocks? _blocks;
    private int _tailLength;

    public override FrameType Type => FrameType.SyncDisk;
    protected override IMessage Header => _header;
    public override int TailLength => _tailLength;

    public DiskBody SetBitmap(ulong epoch, DiskLayout layout, ulong[] words)
    {
        Fill(epoch, DiskPart.DiskBitmap, layout.Hash, (ulong)words.Length, 0, 0);
        _words = words;
        _tailLength = words.Length * 8;
        return Seal2();
    }

    public DiskBody SetHashes(ulong epoch, ulong[] hashes, ulong first, uint count, ulong total)
    {
        Fill(epoch, DiskPart.DiskHashes, 0, total, first, count);
        _words = hashes.AsMemory((int)first, (int)count);
        _tailLength = (int)count * 8;
        return Seal2();
    }

    public DiskBody SetBlocks(ulong epoch, DiskBlocks blocks, ulong first, uint count)
    {
        Fill(epoch, DiskPart.DiskBlocks, 0, blocks.DivergentBlocks, first, count);
        _blocks = blocks;
        _tailLength = (int)count * (8 + BlockSize);
        return Seal2();
    }

    private void Fill(ulong epoch, DiskPart part, ulong layoutHash, ulong total, ulong first, uint count)
    {
        _header.Epoch = epoch;
        _header.Part = part;
        _header.LayoutHash = layoutHash;
        _header.Total = total;
        _header.FirstIndex = first;
        _header.Count = count;
        _words = default;
        _blocks = null;
    }

    private DiskBody Seal2()
    {
        Seal();
        return this;
    }

    protected override void WriteTail(Span<byte> tail)
    {
        if (_header.Part != DiskPart.DiskBlocks)
        {
            var words = _words.Span;
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
