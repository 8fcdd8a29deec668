using System.Buffers.Binary;
using Plover.Metrics;

namespace Plover.Transport;

/// <summary>
/// Decodes the frames arriving on one connection, defensively: the length is checked against the limit before
/// anything is buffered, the type against the connection's state, the sequence number against the expected one,
/// the MAC before the body is looked at. Never throws on any input: a bad stream yields <see cref="FrameStatus.Invalid"/>
/// with a reason. Starts in handshake mode (small frames, handshake types only, no MAC) until
/// <see cref="Authenticate"/>. With an encrypting authenticator, bodies are decrypted into a buffer of this reader's
/// (pooled, grown only for a larger frame than ever before), so a frame's spans point there instead of into the
/// caller's data: valid until the next TryRead either way. Not thread-safe (one reader thread per connection).
/// </summary>
public sealed class FrameReader
{
    private readonly int _maxFrameBytes;
    private FrameAuthenticator? _auth;
    private ulong _expectedSeq;
    private byte[] _plaintext = [];

    public FrameReader(int maxFrameBytes = FrameFormat.DefaultMaxFrameBytes)
    {
        if (maxFrameBytes < FrameFormat.MaxHandshakeFrameBytes)
            throw new ArgumentOutOfRangeException(nameof(maxFrameBytes), $"must be at least {FrameFormat.MaxHandshakeFrameBytes}");
        _maxFrameBytes = maxFrameBytes;
    }

    public bool IsAuthenticated => _auth is not null;
    /// <summary>Largest whole frame (length field included) accepted in the current mode.</summary>
    public int MaxFrameBytes => _auth is null ? FrameFormat.MaxHandshakeFrameBytes : _maxFrameBytes;
    public ulong ExpectedSeq => _expectedSeq;
    public string? Error { get; private set; }
    /// <summary>Where every verified frame is counted (null: not counted), and as which channel.</summary>
    public WireTraffic? Stats { get; set; }
    public WireChannel Channel { get; set; }

    /// <summary>From now on frames must carry sequence numbers 1, 2, 3... and a valid MAC under auth.</summary>
    public void Authenticate(FrameAuthenticator auth)
    {
        _auth = auth;
        _expectedSeq = 1;
    }

    /// <summary>Decodes the first frame in data. On Complete, consumed is its size; on NeedMore, needed is the total size to wait for.</summary>
    public FrameStatus TryRead(ReadOnlySpan<byte> data, out Frame frame, out int consumed, out int needed)
    {
        frame = default;
        consumed = 0;
        needed = 0;
        if (data.Length < FrameFormat.LengthSize) { needed = FrameFormat.HeaderSize; return FrameStatus.NeedMore; }

        uint length = BinaryPrimitives.ReadUInt32LittleEndian(data);
        int macSize = _auth is null ? 0 : FrameFormat.MacSize;
        int minLength = 1 + 8 + FrameFormat.MinBodySize + macSize;
        if (length < minLength) return Fail($"frame length {length} is below the minimum {minLength}");
        if (length > (uint)(MaxFrameBytes - FrameFormat.LengthSize))
            return Fail($"frame of {(ulong)length + FrameFormat.LengthSize} bytes exceeds the limit of {MaxFrameBytes} bytes" +
                        (_auth is null ? " before authentication" : ""));
        int total = FrameFormat.LengthSize + (int)length;
        // The type is checked as soon as it arrives, so a wrong protocol is refused before we buffer its frame.
        if (data.Length >= 5 && !TypeAllowed(data[4]))
            return Fail(_auth is null
                ? $"frame type {data[4]} is not allowed before authentication"
                : $"unknown or unexpected frame type {data[4]}");
        if (data.Length < total) { needed = total; return FrameStatus.NeedMore; }

        byte type = data[4];
        ulong seq = BinaryPrimitives.ReadUInt64LittleEndian(data[5..]);
        var signedPart = data[..(total - macSize)];
        if (_auth is null)
        {
            if (seq != 0) return Fail($"handshake frame carries sequence number {seq}");
        }
        else
        {
            if (seq != _expectedSeq) return Fail($"sequence number {seq}, expected {_expectedSeq} (replayed, dropped or reordered frame)");
            if (!_auth.Encrypts && !_auth.Verify(seq, signedPart, data.Slice(total - macSize, macSize))) return Fail($"bad MAC on frame {seq} (type {type})");
        }

        var body = signedPart[FrameFormat.HeaderSize..];
        if (_auth is { Encrypts: true })
        {
            if (_plaintext.Length < body.Length)
            {
                if (_plaintext.Length > 0) System.Buffers.ArrayPool<byte>.Shared.Return(_plaintext);
                _plaintext = System.Buffers.ArrayPool<byte>.Shared.Rent(body.Length);
            }
            var plain = _plaintext.AsSpan(0, body.Length);
            if (!_auth.Open(seq, data[..FrameFormat.HeaderSize], body, data.Slice(total - macSize, macSize), plain))
                return Fail($"bad authentication tag on encrypted frame {seq} (type {type}): forged or corrupted");
            body = plain;
        }
        if (!FrameBody.TrySplit(body, out var header, out var tail, out var bodyError)) return Fail(bodyError!);
        if (_auth is not null) _expectedSeq++;
        frame = new Frame((FrameType)type, seq, body, header, tail);
        consumed = total;
        Stats?.Received(Channel, WireTraffic.Classify((FrameType)type, body), total);
        return FrameStatus.Complete;
    }

    private bool TypeAllowed(byte type) => _auth is null ? FrameTypes.IsHandshakeType(type) : FrameTypes.IsAuthenticatedType(type);

    private FrameStatus Fail(string reason)
    {
        Error = reason;
        return FrameStatus.Invalid;
    }
}
