using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Plover.Transport;

/// <summary>
/// Protects one direction of a connection with AES-256-GCM under a per-connection, per-direction session key,
/// with the frame's sequence number as the nonce (never reused: the key is fresh per connection and the sequence
/// only grows). Two modes, chosen by the cluster config's "encrypt" (agreed in the handshake):
/// <list type="bullet">
/// <item>encrypt (the default): the body is encrypted in place, the frame's header (length, type, sequence) is
/// associated data, the tag authenticates both. Guest RAM and device state cross the network as ciphertext.</item>
/// <item>authentication only: AES-GMAC, the whole frame is associated data and travels in clear text.</item>
/// </list>
/// Both produce a 16-byte tag in the same place, so the frame layout is the same.
///
/// Why GCM: AES-NI and PCLMUL make it the fastest AEAD .NET offers (measured here, per frame, before encryption was
/// added: 64 B: HMAC 1.8 us, GMAC 1.8 us; 64 KiB: 0.74 vs 2.47 GB/s), and one AesGcm instance per direction means
/// no allocation per frame.
/// One instance per direction; not thread-safe (the sender holds its connection's send lock, the reader is one thread).
/// </summary>
public sealed class FrameAuthenticator : IDisposable
{
    public const int TagSize = 16;
    public const int KeySize = 32;
    private readonly AesGcm _gcm;

    /// <param name="encrypt">false: authentication only (GMAC).</param>
    public FrameAuthenticator(ReadOnlySpan<byte> key, bool encrypt = false)
    {
        if (key.Length != KeySize) throw new ArgumentException($"session key must be {KeySize} bytes", nameof(key));
        _gcm = new AesGcm(key, TagSize);
        Encrypts = encrypt;
    }

    /// <summary>True: bodies are encrypted (<see cref="Seal"/>/<see cref="Open"/>); false: <see cref="Sign"/>/<see cref="Verify"/>.</summary>
    public bool Encrypts { get; }

    /// <summary>Authentication only: the tag of the whole frame.</summary>
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

    /// <summary>Encryption: encrypts body in place and writes the tag over header and body.</summary>
    public void Seal(ulong seq, ReadOnlySpan<byte> header, Span<byte> body, Span<byte> tag)
    {
        Span<byte> nonce = stackalloc byte[12];
        MakeNonce(seq, nonce);
        _gcm.Encrypt(nonce, body, body, tag, header);
    }

    /// <summary>Encryption: decrypts ciphertext into plaintext (same length) if the tag verifies; false (plaintext
    /// cleared) if not.</summary>
    public bool Open(ulong seq, ReadOnlySpan<byte> header, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext)
    {
        Span<byte> nonce = stackalloc byte[12];
        MakeNonce(seq, nonce);
        try
        {
            _gcm.Decrypt(nonce, ciphertext, tag, plaintext, header);
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
