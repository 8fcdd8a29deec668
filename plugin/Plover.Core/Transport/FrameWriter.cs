using System.Buffers.Binary;
using Plover.Metrics;

namespace Plover.Transport;

/// <summary>
/// Encodes frames for one direction of a connection: header, body written in place by the caller's
/// <see cref="IFrameBody"/>, then the tag: over everything before it, or (encrypting authenticator) over the
/// header with the body encrypted in place. Handshake frames (before
/// <see cref="Authenticate"/>) have sequence 0 and no MAC. Not thread-safe (the caller holds the send lock).
/// </summary>
public sealed class FrameWriter
{
    private readonly int _maxFrameBytes;
    private FrameAuthenticator? _auth;
    private ulong _nextSeq;

    public FrameWriter(int maxFrameBytes = FrameFormat.DefaultMaxFrameBytes) => _maxFrameBytes = maxFrameBytes;

    public bool IsAuthenticated => _auth is not null;
    public ulong NextSeq => _nextSeq;
    /// <summary>Where every frame written is counted (null: not counted), and as which channel.</summary>
    public WireTraffic? Stats { get; set; }
    public WireChannel Channel { get; set; }

    public void Authenticate(FrameAuthenticator auth)
    {
        _auth = auth;
        _nextSeq = 1;
    }

    /// <summary>Total bytes of a frame with this body length in the current mode.</summary>
    public int FrameSize(int bodyLength) => FrameFormat.HeaderSize + bodyLength + (_auth is null ? 0 : FrameFormat.MacSize);

    /// <summary>Appends one frame to output. Throws ArgumentException if the frame would exceed the limit.</summary>
    public void Write(ByteBuffer output, IFrameBody body)
    {
        int bodyLength = body.Length;
        int before = output.Count;
        var frame = Begin(output, body.Type, bodyLength);
        try
        {
            body.Write(frame.Slice(FrameFormat.HeaderSize, bodyLength));
        }
        catch
        {
            output.Truncate(before);   // never leave half a frame in the stream
            throw;
        }
        Finish(frame);
    }

    /// <summary>Appends one frame whose body is given as bytes (echoes, tests).</summary>
    public void Write(ByteBuffer output, FrameType type, ReadOnlySpan<byte> body)
    {
        var frame = Begin(output, type, body.Length);
        body.CopyTo(frame[FrameFormat.HeaderSize..]);
        Finish(frame);
    }

    private Span<byte> Begin(ByteBuffer output, FrameType type, int bodyLength)
    {
        long size = (long)FrameFormat.HeaderSize + bodyLength + (_auth is null ? 0 : FrameFormat.MacSize);
        int limit = _auth is null ? FrameFormat.MaxHandshakeFrameBytes : _maxFrameBytes;
        if (bodyLength < FrameFormat.MinBodySize || size > limit)
            throw new ArgumentException($"frame of {size} bytes (type {type}) is outside [{FrameFormat.HeaderSize + FrameFormat.MinBodySize}, {limit}]");
        var frame = output.Append((int)size);
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)(size - FrameFormat.LengthSize));
        frame[4] = (byte)type;
        BinaryPrimitives.WriteUInt64LittleEndian(frame[5..], _auth is null ? 0 : _nextSeq);
        return frame;
    }

    private void Finish(Span<byte> frame)
    {
        int macSize = _auth is null ? 0 : FrameFormat.MacSize;
        Stats?.Sent(Channel, WireTraffic.Classify((FrameType)frame[4], frame[FrameFormat.HeaderSize..^macSize]), frame.Length);
        if (_auth is null) return;
        int signed = frame.Length - FrameFormat.MacSize;
        if (_auth.Encrypts) _auth.Seal(_nextSeq, frame[..FrameFormat.HeaderSize], frame[FrameFormat.HeaderSize..signed], frame[signed..]);
        else _auth.Sign(_nextSeq, frame[..signed], frame[signed..]);
        _nextSeq++;
    }
}
