using System.Security.Cryptography;

namespace Plover.Transport;

/// <summary>
/// One party's identity: an ECDSA P-256 key pair. Each node and each observer has its own (made by
/// <c>plover keygen</c>); the cluster config lists every public key, so a handshake proves which node (or observer)
/// is on the other end, and a key stolen from one host lets an attacker be that host only.
///
/// Why P-256 and not Ed25519: .NET has no Ed25519; ECDsa/ECDiffieHellman P-256 are in the BCL and work under
/// NativeAOT on Linux through OpenSSL, so the library needs no crypto of its own.
///
/// Key file: 96 bytes, D | X | Y (private scalar, public point), mode 0600 or stricter. Public key in the config:
/// base64 of X | Y (64 bytes). Thread-safe: every signature uses its own ECDsa object.
/// </summary>
public sealed class IdentityKey
{
    public const int PublicKeySize = 64;
    public const int FileSize = 96;
    public const int SignatureSize = 64;
    private readonly byte[] _d;

    private IdentityKey(byte[] d, byte[] publicKey)
    {
        _d = d;
        PublicKey = publicKey;
    }

    /// <summary>X | Y of the public point.</summary>
    public byte[] PublicKey { get; }
    public string PublicKeyText => Convert.ToBase64String(PublicKey);

    public static IdentityKey Generate()
    {
        using var ecdsa = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var p = ecdsa.ExportParameters(includePrivateParameters: true);
        return new IdentityKey(p.D!, [.. p.Q.X!, .. p.Q.Y!]);
    }

    /// <summary>The key file's bytes (D | X | Y).</summary>
    public byte[] ToFileBytes() => [.. _d, .. PublicKey];

    /// <summary>Reads a key file; throws InvalidDataException naming the file when it is missing, readable by
    /// others, of the wrong size or not a P-256 key pair.</summary>
    public static IdentityKey Load(string path)
    {
        byte[] bytes;
        try
        {
            if (!OperatingSystem.IsWindows())
            {
                var mode = File.GetUnixFileMode(path);
                const UnixFileMode others = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
                                            UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
                if ((mode & others) != 0)
                    throw new InvalidDataException($"'{path}' is accessible by group or others (mode {Convert.ToString((int)mode & 0x1FF, 8).PadLeft(4, '0')}); " +
                                                   $"a private key must be mode 0600 (chmod 600 '{path}')");
            }
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            string why = e is FileNotFoundException or DirectoryNotFoundException ? "file not found" : e.Message;
            throw new InvalidDataException($"cannot read '{path}': {why}", e);
        }
        if (bytes.Length != FileSize)
            throw new InvalidDataException($"'{path}' holds {bytes.Length} bytes; a key file made by `plover keygen` holds {FileSize} " +
                                           "(an old shared cluster key? see the README on identities)");
        var key = new IdentityKey(bytes[..32], bytes[32..]);
        try
        {
            // A key pair whose halves do not belong together would fail every handshake: say so now.
            var probe = key.Sign("plover-key-check"u8);
            if (!Verify(key.PublicKey, "plover-key-check"u8, probe)) throw new CryptographicException("the public half does not match");
        }
        catch (CryptographicException e)
        {
            throw new InvalidDataException($"'{path}' is not a P-256 key pair: {e.Message}", e);
        }
        return key;
    }

    /// <summary>Decodes a public key from the config; null (with the reason) when it is not a P-256 point.</summary>
    public static byte[]? ParsePublicKey(string text, out string? error)
    {
        byte[] bytes;
        try { bytes = Convert.FromBase64String(text.Trim()); }
        catch (FormatException) { error = "not base64"; return null; }
        if (bytes.Length != PublicKeySize) { error = $"{bytes.Length} bytes, expected {PublicKeySize} (base64 of a P-256 point X | Y, as `plover keygen` prints)"; return null; }
        try
        {
            using var ecdsa = ECDsa.Create(PublicParameters(bytes));
        }
        catch (CryptographicException) { error = "not a point on the P-256 curve"; return null; }
        error = null;
        return bytes;
    }

    public byte[] Sign(ReadOnlySpan<byte> data)
    {
        using var ecdsa = ECDsa.Create(new ECParameters
        {
            Curve = ECCurve.NamedCurves.nistP256,
            D = _d,
            Q = new ECPoint { X = PublicKey[..32], Y = PublicKey[32..] },
        });
        return ecdsa.SignData(data, HashAlgorithmName.SHA256);
    }

    /// <summary>True if signature is publicKey's over data; false for any malformed key or signature.</summary>
    public static bool Verify(byte[] publicKey, ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        if (publicKey.Length != PublicKeySize || signature.Length != SignatureSize) return false;
        try
        {
            using var ecdsa = ECDsa.Create(PublicParameters(publicKey));
            return ecdsa.VerifyData(data, signature, HashAlgorithmName.SHA256);
        }
        catch (CryptographicException)
        {
            return false;
        }
    }

    internal static ECParameters PublicParameters(byte[] xy) => new()
    {
        Curve = ECCurve.NamedCurves.nistP256,
        Q = new ECPoint { X = xy[..32], Y = xy[32..] },
    };
}
