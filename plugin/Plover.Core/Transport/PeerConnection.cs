using System.Net.Sockets;
using Plover.Platform;

namespace Plover.Transport;

/// <summary>
/// One authenticated connection to a peer as <see cref="TcpTransport"/> uses it: the frames, the send queue, the
/// writer thread and the reader loop, shared by both transports; each subclass moves bytes only (a TCP socket,
/// <see cref="TcpConnection"/>, or a UCX stream endpoint, <see cref="Ucx.UcxConnection"/>). The thread that ran the
/// handshake becomes the reader (<see cref="RunReader"/>).
///
/// Sending: <see cref="Send(IFrameBody)"/> encodes the frame (with sequence number and tag, body encrypted unless
/// authentication-only) into the pending buffer under the send lock. <see cref="Flush"/> swaps pending with the
/// in-flight buffer and starts its write on the caller's thread (<see cref="TryStartWrite"/>, which must not block),
/// so a frame normally leaves with no thread hop. A write that did not complete is finished by the writer thread
/// (<see cref="FinishWrite"/>, which may block); frames queued meanwhile accumulate in pending and go out in one
/// write when the current one completes (batching under load). Exactly one party (the flushing caller or the writer
/// thread) owns the in-flight buffer, and the transport's write in progress, while _writerBusy is set.
/// </summary>
internal abstract class PeerConnection
{
    private readonly TcpTransport _owner;
    private readonly FrameReader _reader;
    private readonly FrameWriter _writer;
    private readonly ByteBuffer _recv;
    private readonly int _receiveChunk;
    private readonly long _maxQueuedBytes;
    private readonly object _sendLock = new();
    private readonly SemaphoreSlim _writerWake = new(0);
    private ByteBuffer _pending = new();
    private ByteBuffer _inflight = new();
    private bool _writerBusy;
    private int _closed;

    /// <param name="receiveChunk">The most bytes one <see cref="Read"/> is offered.</param>
    protected PeerConnection(TcpTransport owner, int peerId, FrameReader reader, FrameWriter writer, ByteBuffer recv,
                             long maxQueuedBytes, int receiveChunk)
    {
        _owner = owner;
        PeerId = peerId;
        _reader = reader;
        _writer = writer;
        _recv = recv;
        _maxQueuedBytes = maxQueuedBytes;
        _receiveChunk = receiveChunk;
    }

    public int PeerId { get; }
    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    /// <summary>Starts the writer thread; a subclass calls it last in its constructor.</summary>
    protected void StartWriter(string threadName) =>
        ThreadScheduling.Start(WriterLoop, threadName, ThreadScheduling.Priority.Realtime).Start();

    /// <summary>Starts writing data without blocking, consuming from it what the transport took (all of it, if the
    /// transport keeps its own copy). complete: nothing of this write is left to finish. Throws
    /// <see cref="IOException"/> or <see cref="SocketException"/> on a failure.</summary>
    protected abstract void TryStartWrite(ByteBuffer data, out bool complete);

    /// <summary>On the writer thread: finishes the write in progress and writes all of data (possibly empty), blocking
    /// until done; data is empty afterwards. Throws <see cref="IOException"/> or <see cref="SocketException"/> on a failure.</summary>
    protected abstract void FinishWrite(ByteBuffer data);

    /// <summary>On the reader thread: waits for bytes and copies them into into. Returns how many (> 0); 0 if none came
    /// for a while (the loop calls again); -1 if the peer closed the connection. Throws on a failure.</summary>
    protected abstract int Read(Span<byte> into);

    /// <summary>Releases the transport's resources (once, from <see cref="Close"/>); any thread.</summary>
    protected abstract void CloseTransport();

    public bool Send(IFrameBody body)
    {
        bool overflow;
        lock (_sendLock)
        {
            if (IsClosed) return false;
            _writer.Write(_pending, body);
            overflow = _pending.Count > _maxQueuedBytes;
        }
        if (overflow) Close($"peer is not reading: more than {_maxQueuedBytes} bytes queued");
        return !overflow;
    }

    public bool Send(FrameType type, ReadOnlySpan<byte> body)
    {
        bool overflow;
        lock (_sendLock)
        {
            if (IsClosed) return false;
            _writer.Write(_pending, type, body);
            overflow = _pending.Count > _maxQueuedBytes;
        }
        if (overflow) Close($"peer is not reading: more than {_maxQueuedBytes} bytes queued");
        return !overflow;
    }

    public void Flush()
    {
        lock (_sendLock)
        {
            if (_writerBusy || _pending.Count == 0 || IsClosed) return;
            _writerBusy = true;
            (_pending, _inflight) = (_inflight, _pending);
        }
        bool complete;
        try
        {
            TryStartWrite(_inflight, out complete);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            Close($"send failed: {e.Message}");
            return;
        }
        if (complete)
        {
            lock (_sendLock)
            {
                if (_pending.Count == 0)
                {
                    _writerBusy = false;
                    return;
                }
            }
        }
        _writerWake.Release();   // the writer thread finishes the write and sends what was queued meanwhile
    }

    private void WriterLoop()
    {
        try
        {
            while (true)
            {
                _writerWake.Wait();
                if (IsClosed) return;
                while (true)
                {
                    FinishWrite(_inflight);
                    lock (_sendLock)
                    {
                        if (_pending.Count == 0 || IsClosed)
                        {
                            _writerBusy = false;
                            break;
                        }
                        (_pending, _inflight) = (_inflight, _pending);
                    }
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            Close($"send failed: {e.Message}");
        }
    }

    /// <summary>Reads and dispatches frames until the connection closes. Never throws.</summary>
    public void RunReader()
    {
        try
        {
            while (!IsClosed)
            {
                while (true)
                {
                    var status = _reader.TryRead(_recv.Data, out var frame, out int consumed, out int needed);
                    if (status == FrameStatus.Invalid)
                    {
                        Close(_reader.Error!);
                        return;
                    }
                    if (status == FrameStatus.NeedMore)
                    {
                        _recv.EnsureContiguous(needed);
                        break;
                    }
                    if (!Dispatch(frame)) return;
                    _recv.Consume(consumed);
                }
                int n = Read(_recv.GetSpace(_receiveChunk));
                if (n < 0)
                {
                    Close(_recv.Count > 0 ? $"peer closed the connection inside a frame ({_recv.Count} bytes pending)" : "peer closed the connection");
                    return;
                }
                _recv.Commit(n);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            Close($"receive failed: {e.Message}");
        }
        catch (Exception e)
        {
            Close($"reader failed: {e.GetType().Name}: {e.Message}");
        }
    }

    private bool Dispatch(in Frame frame)
    {
        try
        {
            if (frame.Type == FrameType.Ping)
            {
                // Answered here, on the I/O thread: the round trip measures the transport alone.
                Send(FrameType.Pong, frame.Body);
                Flush();
                return true;
            }
            _owner.Deliver(PeerId, frame);
            return true;
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or ArgumentException)
        {
            Close($"refused frame {frame.Seq} ({frame.Type}): {e.Message}");
            return false;
        }
    }

    /// <summary>Closes the connection once; the owner logs the reason and reports the disconnection.</summary>
    public void Close(string reason)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        CloseTransport();
        _writerWake.Release();
        _owner.OnConnectionClosed(this, reason);
    }
}
