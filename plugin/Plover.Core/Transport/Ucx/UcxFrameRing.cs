using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Plover.Transport.Ucx;

/// <summary>
/// Large frames written one-sided into the peer's memory (the sync link's pages, RDMA WRITE on RDMA hardware).
/// Each side registers a region (<see cref="UcxMemoryRegion"/>) and announces it in its UcxHello: a ring that the
/// peer fills with whole frames, and a credit slot in which the peer tells how much of our ring it has consumed.
/// Sending a frame: wait for room (credit), ucp_put it at the next ring position, flush (complete at the peer), and only
/// then send a small SyncPut frame on the stream that names its position and length. The receiver reads nothing in
/// the ring before that frame, so a frame is verified (MAC, sequence number) and applied exactly as if it had come on
/// the stream: the sync's atomic apply and abort paths do not change. Both counters only grow; ring positions are
/// counters modulo the ring size, and a frame that does not fit before the end starts at 0 (the gap is skipped by
/// both sides alike). The memory is touched only under <see cref="Gate"/>, and <see cref="Free"/> takes it too, so a
/// connection closed from another thread never frees the ring under a reader.
/// </summary>
public sealed unsafe class UcxFrameRing : IDisposable
{
    public const int CreditBytes = 64;                 // [0..8) the peer's consumed counter of our sends; [8..16) our own, the put source
    public static readonly ulong DefaultRingBytes = 16UL << 20;
    /// <summary>Frames at least this large go one-sided; smaller ones are not worth the put, the flush and the extra frame.</summary>
    public const int MinPutFrameBytes = 16 * 1024;

    private readonly UcxWorker _worker;
    private UcxStream _stream = null!;
    private readonly byte* _local;                     // our region: credit slots, then the ring the peer fills
    private readonly UcxMemoryRegion _region;
    private readonly ulong _ringBytes;
    private UcxRemoteWriter? _writer;
    private ulong _peerRingBytes;
    private ulong _sent;                               // bytes of the peer's ring used so far (gaps included)
    private ulong _received;                           // bytes of our ring consumed so far (gaps included)
    private readonly object _gate = new();
    private bool _freed;

    public UcxFrameRing(UcxWorker worker, ulong ringBytes)
    {
        _worker = worker;
        _ringBytes = ringBytes;
        _local = (byte*)NativeMemory.AlignedAlloc((nuint)(CreditBytes + (long)ringBytes), 4096);
        new Span<byte>(_local, CreditBytes).Clear();
        try { _region = new UcxMemoryRegion(worker, _local, CreditBytes + ringBytes); }
        catch { NativeMemory.AlignedFree(_local); throw; }
    }

    /// <summary>What the peer needs to write here (goes into our UcxHello).</summary>
    public (byte[] Key, ulong Address, ulong Length) Announcement => (_region.PackedKey(), _region.Address, _region.Length);

    /// <summary>Connects to the peer's announced region (from its UcxHello).</summary>
    public void Attach(UcxStream stream, ReadOnlySpan<byte> key, ulong address, ulong length)
    {
        if (length <= CreditBytes + 4096) throw new HandshakeException($"the peer's UCX region of {length} bytes is too small");
        _stream = stream;
        _writer = new UcxRemoteWriter(stream, key, address, length);
        _peerRingBytes = length - CreditBytes;
    }

    /// <summary>Largest frame that can go one-sided (half the peer's ring: a frame never waits for itself).</summary>
    public int MaxPutFrameBytes => (int)Math.Min(_peerRingBytes / 2, int.MaxValue);

    /// <summary>Where the next frame of length bytes will go in the peer's ring (what <see cref="Put"/> will use).</summary>
    public ulong PositionFor(int length)
    {
        ulong position = _sent % _peerRingBytes;
        return position + (ulong)length > _peerRingBytes ? 0 : position;
    }

    /// <summary>Puts frame into the peer's ring and waits until it is complete there; returns its ring position.
    /// The caller then sends the SyncPut frame naming (position, frame.Length).</summary>
    public ulong Put(ReadOnlySpan<byte> frame, int timeoutMs)
    {
        var writer = _writer ?? throw new InvalidOperationException("no peer region");
        ulong length = (ulong)frame.Length;
        ulong position = _sent % _peerRingBytes;
        ulong gap = position + length > _peerRingBytes ? _peerRingBytes - position : 0;
        ulong end = _sent + gap + length;
        long deadline = Environment.TickCount64 + timeoutMs;
        // Room: everything up to end must fit in one ring beyond what the peer has consumed.
        while (end - PeerConsumed() > _peerRingBytes)
        {
            long left = deadline - Environment.TickCount64;
            if (left <= 0 || _stream.IsClosed) throw new IOException(_stream.IsClosed ? "the UCX connection is closed" : "the peer did not free ring space in time");
            long seen = _worker.Generation;
            if (end - PeerConsumed() <= _peerRingBytes) break;
            if (!_worker.ProgressHere()) _worker.WaitForProgress(seen, (int)Math.Min(left, 20));
        }
        position = gap > 0 ? 0 : position;
        fixed (byte* source = frame)
        {
            writer.Put(source, frame.Length, CreditBytes + position);
            writer.Flush(Math.Max(1, (int)(deadline - Environment.TickCount64)));
        }
        _sent = end;
        return position;
    }

    private ulong PeerConsumed()
    {
        lock (_gate)
        {
            if (_freed) throw new IOException("the UCX connection is closed");
            return Volatile.Read(ref *(ulong*)_local);   // written by the peer's one-sided put
        }
    }

    /// <summary>Held while a span from <see cref="Take"/> is read.</summary>
    public object Gate => _gate;

    /// <summary>The frame the peer announced at position, length: checked against where our ring must be. Call
    /// under <see cref="Gate"/> and use the span only there.</summary>
    public ReadOnlySpan<byte> Take(ulong position, ulong length)
    {
        if (_freed) throw new IOException("the UCX connection is closed");
        if (length == 0 || length > _ringBytes / 2) throw new InvalidDataException($"one-sided frame of {length} bytes does not fit the ring");
        ulong expected = _received % _ringBytes;
        ulong gap = expected + length > _ringBytes ? _ringBytes - expected : 0;
        if (gap > 0) expected = 0;
        if (position != expected) throw new InvalidDataException($"one-sided frame at ring position {position}, expected {expected}");
        _received += gap + length;
        return new ReadOnlySpan<byte>(_local + CreditBytes + position, (int)length);
    }

    /// <summary>Tells the peer that everything taken so far is consumed (its frame spans are no longer used).</summary>
    public void Release()
    {
        lock (_gate)
        {
            if (_writer is null || _freed) return;
            *(ulong*)(_local + 8) = _received;
            _writer.Put(_local + 8, 8, 0);
        }
    }

    /// <summary>Before the stream closes: the remote key and our registration go; the memory is freed.</summary>
    public void Dispose()
    {
        _writer?.Dispose();
        _writer = null;
        _region.Dispose();
    }

    /// <summary>Frees the ring's memory; only after the stream's endpoint is closed (the peer can no longer write).</summary>
    public void Free()
    {
        lock (_gate)
        {
            if (_freed) return;
            _freed = true;
            NativeMemory.AlignedFree(_local);
        }
    }

    /// <summary>The SyncPut frame's body: no header, tail = position, length.</summary>
    public static void WriteAnnouncement(Span<byte> body, ulong position, ulong length)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(body, 0);
        BinaryPrimitives.WriteUInt64LittleEndian(body[4..], position);
        BinaryPrimitives.WriteUInt64LittleEndian(body[12..], length);
    }

    public const int AnnouncementBytes = 20;
}
