namespace Plover.Sync;

/// <summary>
/// The backup's staged disk blocks (issue 15 items 3 and 4): the primary's divergent blocks are kept here until the
/// whole sync arrived, then written in one step with the RAM (the disk is not touched before: an aborted sync leaves
/// it at the previous sync point). The room is bounded (one chunk of blocks, see <see cref="DiskBlocks"/>): when a
/// sync sends more, the engine writes what is staged (<see cref="Apply"/>), marks the backup invalid, and stages on
/// from empty (<see cref="Clear"/>). Nothing from the primary is trusted: a block must be in the current chunk of
/// the union, blocks come in ascending order over the whole sync, each exactly 4 KiB (a short last block's padding is
/// not written).
/// </summary>
public sealed unsafe class DiskStaging : IDisposable
{
    private const int BlockSize = GuestRamBlock.PageSize;
    private readonly NativeBuffer<ulong> _blocks = new();
    private readonly NativeBuffer<byte> _data = new();
    private ulong _count, _room, _last;
    private bool _any;   // a block was staged in this sync (_last is its number)

    /// <summary>Blocks staged since the last <see cref="Reset"/> or <see cref="Clear"/>.</summary>
    public ulong Count => _count;
    public bool IsFull => _count == _room;
    /// <summary>Bytes held for staged blocks (tests: bounded by the room, not the union).</summary>
    public ulong BufferBytes => _data.Capacity;

    /// <summary>A new sync: forgets what was staged and makes room for room blocks (made once: a growing buffer would
    /// not keep what was staged).</summary>
    public void Reset(ulong room)
    {
        _count = 0;
        _room = room;
        _any = false;
        _blocks.Ensure(Math.Max(room, 1));
        _data.Ensure(Math.Max(room, 1) * BlockSize);
    }

    /// <summary>Forgets the staged blocks once they were written (<see cref="Apply"/>); the order check goes on.</summary>
    public void Clear() => _count = 0;

    /// <summary>Stages global block g (see <see cref="DiskLayout"/>) of the current chunk of chunk.</summary>
    public void Stage(DiskBlocks chunk, ulong g, ReadOnlySpan<byte> data)
    {
        if (data.Length != BlockSize)
            throw new SyncProtocolException($"disk block {g} comes with {data.Length} bytes, not {BlockSize}");
        if (_any && g <= _last)
            throw new SyncProtocolException($"disk block {g} is out of order");
        if (!chunk.InChunk(g))
            throw new SyncProtocolException($"disk block {g} is not a block of the union's chunk [{chunk.ChunkFirst}, +{chunk.ChunkCount})");
        if (IsFull) throw new InvalidOperationException($"the disk staging is full ({_room} blocks): write it first");
        _blocks.Pointer[_count] = g;
        data.CopyTo(new Span<byte>(_data.Pointer + _count * BlockSize, BlockSize));
        _count++;
        _last = g;
        _any = true;
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

    /// <summary>Gives the staging memory back (after a full sync, which staged up to a chunk).</summary>
    public void Release()
    {
        _count = _room = 0;
        _any = false;
        _blocks.Release();
        _data.Release();
    }

    public void Dispose()
    {
        _blocks.Dispose();
        _data.Dispose();
    }
}
