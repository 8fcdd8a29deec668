using Google.Protobuf;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Tests.Sync;

/// <summary>Any frame a hostile peer cares to send: a type, a protobuf header and raw tail bytes.</summary>
internal sealed class RawBody(FrameType type, IMessage header, byte[] tail) : IFrameBody
{
    public FrameType Type => type;
    public int Length => FrameBody.Size(header.CalculateSize(), tail.Length);
    public void Write(Span<byte> destination)
    {
        int h = header.CalculateSize();
        FrameBody.WriteHeaderLength(destination, h);
        header.WriteTo(destination.Slice(4, h));
        tail.CopyTo(destination[(4 + h)..]);
    }
}
