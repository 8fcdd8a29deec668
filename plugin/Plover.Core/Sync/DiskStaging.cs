namespace Plover.Sync;

/// <summary>
/// The backup's staged disk blocks (issue 15 item 3): the primary's divergent blocks are kept here until the whole
/// sync arrived, then written in one step with the RAM (the disk is not touched before: an aborted sync leaves it
/// at the previous sync point). Nothing from the primary is trusted: a block must be in the union, blocks come in
/// ascending order, each exactly 4 KiB (a short last block's padding is not written).
/// </summary>
public sealed unsafe class DiskStaging : IDisposable
{
    private const int BlockSize = GuestRamBlock.PageSize;
    private readonly NativeBuffer<ulong> _blocks = new();
    private readonly NativeBuffer<byte> _data = new();
    private ulong _count, _limit;

    public ulong Count => _count;

    /// <summary>Forgets what was staged and makes room for the union's blocks, the most the primary may send (room is
    /// made once: a growing buffer would not keep what was staged).</summary>
    public void Reset(ulong unionBlocks)
    {
        _count = 0;
        _limit = unionBlocks;
        _blocks.Ensure(Math.Max(unionBlocks, 1));
        _data.Ensure(Math.Max(unionBlocks, 1) * BlockSize);
    }

    /// <summary>Stages global block g (see <see cref="DiskLayout"/>) of the union.</summary>
    public void Stage(DiskLayout layout, ReadOnlySpan<ulong> union, ulong g, ReadOnlySpan<byte> data)
    {
        if (data.Length != BlockSize)
            throw new SyncProtocolException($"disk block {g} comes with {data.Length} bytes, not {BlockSize}");
        if (_count > 0 && g <= _blocks.Pointer[_count - 1])
            throw new SyncProtocolException($"disk block {g} is out of order");
        if (!layout.TryLocate(g, out _, out _) || (union[(int)(g / 64)] & (1UL << (int)(g % 64))) == 0)
            throw new SyncProtocolException($"disk block {g} is not a block of the union");
        if (_count == _limit)
            throw new SyncProtocolException($"more disk blocks than the {_limit} of the union");
        ulong* blocks = _blocks.Pointer;
        byte* bytes = _data.Pointer;
        blocks[_count] = g;
        data.CopyTo(new Span<byte>(bytes + _count * BlockSize, BlockSize));
        _count++;
    }

    /// <summary>MAIN, VM stopped: writes every staged block, one host write per run of consecutive blocks of a drive;
    /// returns the bytes written.</summary>
    public ulong Apply(DiskLayout layout, IDiskHost host)
    {
        ulong* blocks = _blocks.Pointer;
        ulong written = 0;
        for (ulong i = 0; i < _count;)
        {
            layout.TryLocate(blocks[i], out int drive, out ulong block);
            var d = layout.Drive(drive);
            ulong j = i + 1;
            while (j < _count && blocks[j] == blocks[j - 1] + 1 && block + (j - i) < d.Blocks) j++;
            ulong bytes = (j - i - 1) * BlockSize + (ulong)d.BlockLength(block + (j - i - 1));
            host.Write(drive, block * d.Granularity, new ReadOnlySpan<byte>(_data.Pointer + i * BlockSize, checked((int)bytes)));
            written += bytes;
            i = j;
        }
        return written;
    }

    /// <summary>Gives the staging memory back (after a full sync, which staged up to whole drives).</summary>
    public void Release()
    {
        _count = _limit = 0;
        _blocks.Release();
        _data.Release();
    }

    public void Dispose()
    {
        _blocks.Dispose();
        _data.Dispose();
    }
}
