namespace Plover.Transport;

/// <summary>One decoded, verified frame. The spans point into the receive buffer: valid until the next read.</summary>
public readonly ref struct Frame
{
    public Frame(FrameType type, ulong seq, ReadOnlySpan<byte> body, ReadOnlySpan<byte> header, ReadOnlySpan<byte> tail)
    {
        Type = type;
        Body = body;
        Seq = seq;
        Header = header;
        Tail = tail;
    }

    public FrameType Type { get; }
    public ulong Seq { get; }
    /// <summary>The whole body: u32 header length, header, tail.</summary>
    public ReadOnlySpan<byte> Body { get; }
    /// <summary>The protobuf header.</summary>
    public ReadOnlySpan<byte> Header { get; }
    /// <summary>Raw bytes after the header (bulk data).</summary>
    public ReadOnlySpan<byte> Tail { get; }
}

public enum FrameStatus
{
    /// <summary>A frame was decoded; Consumed bytes belong to it.</summary>
    Complete,
    /// <summary>Not enough bytes yet; Needed is the total the buffer must hold (already checked against the limit).</summary>
    NeedMore,
    /// <summary>The stream is malformed or forged; Error says why. The connection must be closed.</summary>
    Invalid,
}
