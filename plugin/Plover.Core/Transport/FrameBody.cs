using System.Buffers.Binary;

namespace Plover.Transport;

/// <summary>
/// A frame body: <c>u32 headerLength, protobuf header (headerLength bytes), raw tail</c>. The tail carries bulk
/// data (entry payloads, pages) so it is never copied into or out of protobuf objects.
/// </summary>
public static class FrameBody
{
    public static int Size(int headerLength, int tailLength) => 4 + headerLength + tailLength;

    /// <summary>Splits a body; false (with a reason) if the header length does not fit.</summary>
    public static bool TrySplit(ReadOnlySpan<byte> body, out ReadOnlySpan<byte> header, out ReadOnlySpan<byte> tail, out string? error)
    {
        header = tail = default;
        if (body.Length < 4) { error = $"frame body of {body.Length} bytes has no header length"; return false; }
        uint h = BinaryPrimitives.ReadUInt32LittleEndian(body);
        if (h > (uint)(body.Length - 4)) { error = $"protobuf header length {h} exceeds the body ({body.Length - 4} bytes)"; return false; }
        header = body.Slice(4, (int)h);
        tail = body[(4 + (int)h)..];
        error = null;
        return true;
    }

    public static void WriteHeaderLength(Span<byte> body, int headerLength) =>
        BinaryPrimitives.WriteUInt32LittleEndian(body, (uint)headerLength);
}
