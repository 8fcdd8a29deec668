namespace Plover.Transport;

/// <summary>
/// Layout of one frame, little-endian:
/// <code>
///   u32 length   bytes that follow this field: 1 + 8 + body + MAC
///   u8  type     FrameType
///   u64 seq      per direction 1, 2, 3... on an authenticated connection; 0 in handshake frames
///   body         u32 header length, protobuf header, raw tail (see FrameBody); AES-GCM ciphertext when encrypted
///   mac[16]      AES-GCM tag (authenticated frames only): over the header and the encrypted body, or, when only
///                authenticating, a GMAC over every byte before it (see FrameAuthenticator)
/// </code>
/// The sequence number makes a replayed, dropped or reordered frame fail (it must equal the expected one,
/// and it is the nonce, so it is authenticated too).
/// </summary>
public static class FrameFormat
{
    public const int LengthSize = 4;
    /// <summary>length + type + seq.</summary>
    public const int HeaderSize = 4 + 1 + 8;
    public const int MacSize = FrameAuthenticator.TagSize;
    /// <summary>Smallest body: the u32 protobuf header length.</summary>
    public const int MinBodySize = 4;

    /// <summary>Before authentication a peer may send only small handshake frames.</summary>
    public const int MaxHandshakeFrameBytes = 4096;
    /// <summary>Default limit on an authenticated frame (page batches are the largest).</summary>
    public const int DefaultMaxFrameBytes = 64 << 20;
}
