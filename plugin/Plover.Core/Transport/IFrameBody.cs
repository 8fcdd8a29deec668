namespace Plover.Transport;

/// <summary>
/// Something that can write itself as a frame body: u32 header length, protobuf header, raw tail
/// (see <see cref="FrameBody"/>). Senders keep one instance and refill it per message, so sending allocates
/// nothing; the transport calls <see cref="Write"/> straight into its send buffer (or, over RDMA, into the
/// registered ring slot of the peer).
/// </summary>
public interface IFrameBody
{
    FrameType Type { get; }
    /// <summary>Exact number of bytes <see cref="Write"/> produces.</summary>
    int Length { get; }
    void Write(Span<byte> destination);
}
