namespace Plover.Transport;

/// <summary>One authenticated connection to a peer as <see cref="TcpTransport"/> uses it: frames over a TCP socket
/// (<see cref="TcpConnection"/>) or over a UCX endpoint (<see cref="Ucx.UcxConnection"/>).</summary>
internal interface IPeerConnection
{
    int PeerId { get; }
    bool IsClosed { get; }
    bool Send(IFrameBody body);
    bool Send(FrameType type, ReadOnlySpan<byte> body);
    void Flush();
    /// <summary>Reads and dispatches frames until the connection closes. Never throws.</summary>
    void RunReader();
    void Close(string reason);
}
