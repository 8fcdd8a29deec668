using System.Net.Sockets;
using Plover.Platform;

namespace Plover.Transport;

/// <summary>
/// One authenticated TCP connection to a peer. The thread that ran the handshake becomes its reader
/// (<see cref="RunReader"/>); a writer thread finishes writes that would block.
///
/// Sending: <see cref="Send"/> encodes the frame (with sequence number and tag, body encrypted unless authentication-only) into the pending buffer under
/// the send lock. <see cref="Flush"/> swaps pending with the in-flight buffer and tries a non-blocking write on
/// the caller's thread, so a frame normally reaches the kernel with no thread hop. Whatever does not fit is
/// finished by the writer thread; frames queued meanwhile accumulate in pending and go out in one write when
/// the current one completes (batching under load). Exactly one party (the flushing caller or the writer
/// thread) owns the in-flight buffer while _writerBusy is set.
/// </summary>
internal sealed class TcpConnection : IPeerConnection
{
    private readonly Socket _socket;
    private readonly TcpTransport _owner;
    private readonly FrameReader _reader;
    private readonly FrameWriter _writer;
    private readonly ByteBuffer _recv;
    private readonly FrameAuthenticator _sendAuth;
    private readonly FrameAuthenticator _recvAuth;
    private readonly long _maxQueuedBytes;
    private readonly object _sendLock = new();
    private readonly SemaphoreSlim _writerWake = new(0);
    private ByteBuffer _pending = new();
    private ByteBuffer _inflight = new();
    private bool _writerBusy;
    private int _closed;

    public TcpConnection(TcpTransport owner, Socket socket, int peerId, FrameReader reader, FrameWriter writer, ByteBuffer recv,
                         HandshakeResult keys, long maxQueuedBytes)
    {
        _owner = owner;
        _socket = socket;
        PeerId = peerId;
        _reader = reader;
        _writer = writer;
        _recv = recv;
        _maxQueuedBytes = maxQueuedBytes;
        _sendAuth = new FrameAuthenticator(keys.SendKey, keys.Encrypt);
        _recvAuth = new FrameAuthenticator(keys.ReceiveKey, keys.Encrypt);
        _writer.Authenticate(_sendAuth);
        _reader.Authenticate(_recvAuth);
        var t = ThreadScheduling.Start(WriterLoop, $"plover-tcp-write-{peerId}", ThreadScheduling.Priority.Realtime);
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
        int n = LinuxSocket.TrySend(_socket, _inflight.Data, out int errno);
        if (n < 0)
        {
            Close($"send failed (errno {errno})");
            return;
        }
        _inflight.Consume(n);
        if (_inflight.Count == 0)
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
        _writerWake.Release();   // the writer thread finishes the write and drains what was queued meanwhile
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
                    var data = _inflight.Data;
                    while (!data.IsEmpty)
                    {
                        int n = _socket.Send(data, SocketFlags.None, out var err);
                        if (err != SocketError.Success) { Close($"send failed: {err}"); return; }
                        data = data[n..];
                    }
                    _inflight.Clear();
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
        catch (Exception e) when (e is ObjectDisposedException or SocketException)
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
                var space = _recv.GetSpace(16 * 1024);
                int n = _socket.Receive(space, SocketFlags.None, out var err);
                if (err != SocketError.Success)
                {
                    Close($"receive failed: {err}");
                    return;
                }
                if (n == 0)
                {
                    Close(_recv.Count > 0 ? $"peer closed the connection inside a frame ({_recv.Count} bytes pending)" : "peer closed the connection");
                    return;
                }
                _recv.Commit(n);
            }
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

    /// <summary>Closes the socket once; the owner logs the reason and reports the disconnection.</summary>
    public void Close(string reason)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        try { _socket.Shutdown(SocketShutdown.Both); } catch { /* already gone */ }
        _socket.Dispose();
        _writerWake.Release();
        _owner.OnConnectionClosed(this, reason);
    }
}
