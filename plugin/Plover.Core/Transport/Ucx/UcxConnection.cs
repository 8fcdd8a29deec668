using System.Net.Sockets;
using Plover.Platform;

namespace Plover.Transport.Ucx;

/// <summary>
/// One authenticated connection to a peer whose frames travel over a UCX stream (same frames, keys and sequence
/// numbers as <see cref="TcpConnection"/>, whose sending scheme it shares: frames pile up in pending under the send
/// lock; <see cref="Flush"/> swaps pending with in-flight and posts it to UCX on the caller's thread; a writer
/// thread waits for a send UCX could not finish at once and posts what was queued meanwhile, in one go). UCX reads
/// the posted bytes later, so they are copied into a pinned buffer (never moved by the GC) before posting. The
/// reader thread takes received bytes from UCX and, while none come, checks the bootstrap TCP socket: its closing
/// (or a failed UCX request) closes the connection.
/// </summary>
internal sealed unsafe class UcxConnection : IPeerConnection
{
    private const int SendTimeoutMs = 30_000;
    private readonly TcpTransport _owner;
    private readonly Socket _socket;
    private readonly UcxStream _stream;
    private readonly FrameReader _reader;
    private readonly FrameWriter _writer;
    private readonly ByteBuffer _recv;
    private readonly long _maxQueuedBytes;
    private readonly object _sendLock = new();
    private readonly SemaphoreSlim _writerWake = new(0);
    private ByteBuffer _pending = new();
    private ByteBuffer _inflight = new();
    private byte[] _posted = GC.AllocateUninitializedArray<byte>(64 * 1024, pinned: true);
    private nint _request;      // the posted send UCX has not finished (owned by whoever set _writerBusy)
    private bool _writerBusy;
    private int _closed;

    /// <param name="reader">Authenticated already (the UcxHello came through it), as is writer.</param>
    public UcxConnection(TcpTransport owner, Socket socket, UcxStream stream, int peerId, FrameReader reader, FrameWriter writer,
                         ByteBuffer recv, long maxQueuedBytes)
    {
        _owner = owner;
        _socket = socket;
        _stream = stream;
        PeerId = peerId;
        _reader = reader;
        _writer = writer;
        _recv = recv;
        _maxQueuedBytes = maxQueuedBytes;
        var t = ThreadScheduling.Start(WriterLoop, $"plover-ucx-write-{peerId}", ThreadScheduling.Priority.Realtime);
        t.Start();
    }

    public int PeerId { get; }
    public bool IsClosed => Volatile.Read(ref _closed) != 0;

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
        if (!PostInflight()) return;
        if (_request == 0)
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
        _writerWake.Release();   // the writer thread waits for the send and posts what was queued meanwhile
    }

    /// <summary>Copies in-flight into the pinned buffer and posts it; false (connection closed) on a failure.</summary>
    private bool PostInflight()
    {
        int n = _inflight.Count;
        if (_posted.Length < n) _posted = GC.AllocateUninitializedArray<byte>(Math.Max(n, _posted.Length * 2), pinned: true);
        _inflight.Data.CopyTo(_posted);
        _inflight.Clear();
        try
        {
            fixed (byte* p = _posted) _request = _stream.Post(p, n);   // pinned: the address stays valid after fixed
            return true;
        }
        catch (IOException e)
        {
            _request = 0;
            Close($"send failed: {e.Message}");
            return false;
        }
    }

    private void WriterLoop()
    {
        while (true)
        {
            _writerWake.Wait();
            if (IsClosed) return;
            while (true)
            {
                try
                {
                    _stream.Wait(_request, SendTimeoutMs, "send");
                    _request = 0;
                }
                catch (IOException e)
                {
                    _request = 0;
                    Close($"send failed: {e.Message}");
                    return;
                }
                lock (_sendLock)
                {
                    if (_pending.Count == 0 || IsClosed)
                    {
                        _writerBusy = false;
                        break;
                    }
                    (_pending, _inflight) = (_inflight, _pending);
                }
                if (!PostInflight()) return;
            }
        }
    }

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
                int n = _stream.Receive(_recv.GetSpace(64 * 1024), 50);
                if (n > 0)
                {
                    _recv.Commit(n);
                    continue;
                }
                if (_socket.Poll(0, SelectMode.SelectRead) && _socket.Available == 0)
                {
                    Close("peer closed the connection");
                    return;
                }
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
                Send(FrameType.Pong, frame.Body);   // answered on the I/O thread: the round trip measures the transport alone
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

    /// <summary>Closes the UCX endpoint and the bootstrap socket once; the owner logs the reason.</summary>
    public void Close(string reason)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        _stream.Dispose();
        try { _socket.Shutdown(SocketShutdown.Both); } catch { /* already gone */ }
        _socket.Dispose();
        _writerWake.Release();
        _owner.OnConnectionClosed(this, reason);
    }
}
