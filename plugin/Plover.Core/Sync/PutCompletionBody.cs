using System.Buffers.Binary;
using System.Numerics;
using Google.Protobuf;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Sync;

/// <summary>
/// Frame 34 with put set (UCX page puts): the completion of one batch whose data the primary already put into the
/// backup's staging buffer and flushed. It carries what a SyncPages frame carries but, in place of each page or
/// sub-block, the primary's CityHash64 of it: the backup checks the staged bytes against those before it accepts
/// the batch (a put bypasses the stream's MAC and encryption). Whole pages: count page numbers, then count hashes.
/// Sub-blocks: per page its mask, its root (SyncEngine.SubBlockRoot), then the hashes of the sub-blocks the mask names, in address order.
/// </summary>
internal sealed unsafe class PutCompletionBody : SyncFrameBody
{
    private readonly SyncPages _header = new();
    private ulong* _pages;
    private ulong* _hashes;   // whole pages: one per page; sub-blocks: 4096 / blockBytes per page
    private ulong* _masks;
    private ulong* _roots;
    private int _blockBytes;
    private int _tailLength;

    public override FrameType Type => FrameType.SyncPages;
    protected override IMessage Header => _header;
    public override int TailLength => _tailLength;

    public PutCompletionBody SetPages(ulong epoch, ulong* pageNumbers, ulong* hashes, uint count)
    {
        Set(epoch, count, 0, 0, 0);
        _blockBytes = 0;
        _pages = pageNumbers;
        _hashes = hashes;
        _tailLength = checked((int)count * 16);
        Seal();
        return this;
    }

    /// <summary>masks and roots: one per page; subBlockHashes: every sub-block's hash of each page (4096 / blockBytes per page).</summary>
    public PutCompletionBody SetSubBlocks(ulong epoch, ulong* masks, ulong* roots, ulong* subBlockHashes, ulong first, uint count, int blockBytes)
    {
        ulong blocks = 0;
        for (uint i = 0; i < count; i++) blocks += (ulong)BitOperations.PopCount(masks[i]);
        Set(epoch, count, (uint)blockBytes, first, (uint)blocks);
        _masks = masks;
        _roots = roots;
        _hashes = subBlockHashes;
        _blockBytes = blockBytes;
        _tailLength = checked((int)(count * (ulong)SubBlockPagesBody.PageHeadBytes(blockBytes) + blocks * 8));
        Seal();
        return this;
    }

    private void Set(ulong epoch, uint count, uint blockBytes, ulong first, uint blocks)
    {
        _header.Epoch = epoch;
        _header.Count = count;
        _header.SubBlockBytes = blockBytes;
        _header.FirstIndex = first;
        _header.Blocks = blocks;
        _header.Put = true;
    }

    protected override void WriteTail(Span<byte> tail)
    {
        int count = (int)_header.Count;
        if (_blockBytes == 0)
        {
            for (int i = 0; i < count; i++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(tail[(i * 8)..], _pages[i]);
                BinaryPrimitives.WriteUInt64LittleEndian(tail[((count + i) * 8)..], _hashes[i]);
            }
            return;
        }
        int maskBytes = SubBlockPagesBody.MaskBytes(_blockBytes);
        int perPage = GuestRamBlock.PageSize / _blockBytes;
        int at = 0;
        Span<byte> mask = stackalloc byte[8];
        for (int i = 0; i < count; i++)
        {
            ulong m = _masks[i];
            BinaryPrimitives.WriteUInt64LittleEndian(mask, m);
            mask[..maskBytes].CopyTo(tail[at..]);
            at += maskBytes;
            BinaryPrimitives.WriteUInt64LittleEndian(tail[at..], _roots[i]);
            at += 8;
            for (; m != 0; m &= m - 1, at += 8)
                BinaryPrimitives.WriteUInt64LittleEndian(tail[at..], _hashes[i * perPage + BitOperations.TrailingZeroCount(m)]);
        }
        if (at != _tailLength) throw new InvalidOperationException($"put completion wrote {at} bytes, sized {_tailLength}");
    }
}
