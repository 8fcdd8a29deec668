using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Plover.Transport;

/// <summary>
/// The MAC of one direction of an authenticated connection: AES-256-GMAC (AES-GCM with no plaintext; the whole
/// frame is associated data) under a per-connection, per-direction session key, with the frame's sequence
/// number as the nonce (never reused: the key is fresh per connection and the sequence only grows).
///
/// Why GMAC and not HMAC-SHA256: measured on this machine (AES-NI, PCLMUL, SHA-NI; .NET 10, OpenSSL), per frame:
/// 64 B: HMAC one-shot 4.0 us, HMAC reused 1.8 us, GMAC 1.8 us; 1.5 KB: 10.9 / 3.5 / 2.7 us;
/// 64 KiB: 0.69 / 0.74 / 2.47 GB/s; 1 MiB: 0.74 / 0.76 / 3.71 GB/s. GMAC is never slower and 5x faster on the
/// large frames (log batches, pages). Frames are authenticated, not encrypted: the cluster is trusted, the
/// network is not, and nothing here is secret (encrypting would halve the bulk speed).
/// One instance per direction; not thread-safe (the sender holds its connection's send lock, the reader is one thread).
/// </summary>
public sealed class FrameAuthenticator : IDisposable
{
    public const int TagSize = 16;
    public const int KeySize = 32;
    private readonly AesGcm _gcm;

    public FrameAuthenticator(ReadOnlySpan<byte> key)
    {
        if (key.Length != KeySize) throw new ArgumentException($"session key must be {KeySize} bytes", nameof(key));
        _gcm = new AesGcm(key, TagSize);
    }

    public void Sign(ulong seq, ReadOnlySpan<byte> frame, Span<byte> tag)
    {
        Span<byte> nonce = stackalloc byte[12];
        MakeNonce(seq, nonce);
        _gcm.Encrypt(nonce, ReadOnlySpan<byte>.Empty, Span<byte>.Empty, tag, frame);
    }

    public bool Verify(ulong seq, ReadOnlySpan<byte> frame, ReadOnlySpan<byte> tag)
    {
        Span<byte> nonce = stackalloc byte[12];
        MakeNonce(seq, nonce);
        try
        {
            _gcm.Decrypt(nonce, ReadOnlySpan<byte>.Empty, tag, Span<byte>.Empty, frame);
            return true;
        }
        catch (CryptographicException)
        {
            return false;
        }
    }

    private static void MakeNonce(ulong seq, Span<byte> nonce)
    {
        nonce[..4].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(nonce[4..], seq);
    }

    public void Dispose() => _gcm.Dispose();
}
