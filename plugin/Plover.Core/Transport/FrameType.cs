namespace Plover.Transport;

/// <summary>The type byte of a frame (see proto/plover.proto for the message each one carries).</summary>
public enum FrameType : byte
{
    Hello = 1,
    AuthProof = 2,
    Consensus = 8,
    Ping = 9,
    Pong = 10,
    NodeStatusRequest = 11,
    NodeStatus = 12,
    UcxHello = 13,
    // 32..63 reserved for syncvm (proto/sync.proto); 42..63 still free.
    SyncBitmap = 32,
    SyncHashes = 33,
    SyncPages = 34,
    SyncDeviceState = 35,
    SyncAck = 36,
    SyncAbort = 37,
    SyncBegin = 38,
    SyncDeviceHashes = 39,
    /// <summary>A frame was written one-sided into the receiver's ring (UCX): tail = position, length.</summary>
    SyncPut = 40,
    /// <summary>The backup's staging region for page puts (UCX).</summary>
    SyncStaging = 41,
    /// <summary>The disk part of a sync (replicated drives): bitmaps, block hashes, divergent blocks.</summary>
    SyncDisk = 42,
}

public static class FrameTypes
{
    /// <summary>Types allowed before the connection is authenticated.</summary>
    public static bool IsHandshakeType(byte type) => type is (byte)FrameType.Hello or (byte)FrameType.AuthProof;

    /// <summary>Types allowed on an authenticated connection. Anything else closes the connection.</summary>
    public static bool IsAuthenticatedType(byte type) =>
        type is (byte)FrameType.Consensus or (byte)FrameType.Ping or (byte)FrameType.Pong
            or (byte)FrameType.NodeStatusRequest or (byte)FrameType.NodeStatus or (byte)FrameType.UcxHello
            or (>= (byte)FrameType.SyncBitmap and <= (byte)FrameType.SyncDisk);
}
