using Google.Protobuf;

namespace Plover.Transport;

/// <summary>A frame body made of one protobuf message and no tail (handshake and other small control frames).</summary>
public sealed class ProtobufBody : IFrameBody
{
    private IMessage _message = null!;
    private int _size;

    public ProtobufBody() { }

    public ProtobufBody(FrameType type, IMessage message) => Set(type, message);

    public FrameType Type { get; private set; }
    public int Length => FrameBody.Size(_size, 0);

    public ProtobufBody Set(FrameType type, IMessage message)
    {
        Type = type;
        _message = message;
        _size = message.CalculateSize();
        return this;
    }

    public void Write(Span<byte> destination)
    {
        FrameBody.WriteHeaderLength(destination, _size);
        _message.WriteTo(destination.Slice(4, _size));
    }
}
