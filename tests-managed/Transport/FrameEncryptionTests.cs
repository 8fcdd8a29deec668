using System.Security.Cryptography;
using System.Text;
using Plover.Transport;
using Xunit;

namespace Plover.Tests.Transport;

/// <summary>Frames under an encrypting authenticator: they round-trip, their wire bytes hide the body, and any
/// tampering is refused with a reason, never an exception.</summary>
public sealed class FrameEncryptionTests
{
    private static readonly byte[] Key = RandomNumberGenerator.GetBytes(FrameAuthenticator.KeySize);

    /// <summary>A guest page that is easy to find in a byte stream.</summary>
    private static byte[] SecretPage() =>
        Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("GUEST-SECRET-PAGE-", 4096 / 18 + 1)))[..4096];

    private static (FrameWriter, FrameReader) Pair(bool writerEncrypts, bool readerEncrypts)
    {
        var writer = new FrameWriter();
        writer.Authenticate(new FrameAuthenticator(Key, writerEncrypts));
        var reader = new FrameReader();
        reader.Authenticate(new FrameAuthenticator(Key, readerEncrypts));
        return (writer, reader);
    }

    private static bool Contains(ReadOnlySpan<byte> haystack, ReadOnlySpan<byte> needle) => haystack.IndexOf(needle) >= 0;

    [Fact]
    public void EncryptedFramesRoundTrip()
    {
        var (writer, reader) = Pair(true, true);
        using var wire = new ByteBuffer();
        var bodies = new[] { TransportTestKit.RawBody([1, 2, 3]), TransportTestKit.RawBody(SecretPage()), TransportTestKit.RawBody(new byte[200_000]) };
        foreach (var b in bodies) writer.Write(wire, FrameType.Ping, b);
        foreach (var b in bodies)
        {
            Assert.Equal(FrameStatus.Complete, reader.TryRead(wire.Data, out var frame, out int consumed, out _));
            Assert.Equal(FrameType.Ping, frame.Type);
            Assert.True(frame.Body.SequenceEqual(b));
            wire.Consume(consumed);
        }
        Assert.Equal(0, wire.Count);
    }

    [Fact]
    public void WireBytesOfAnEncryptedFrameDoNotContainThePage()
    {
        var page = SecretPage();
        var needle = Encoding.ASCII.GetBytes("GUEST-SECRET-PAGE-");
        var (writer, _) = Pair(true, true);
        using var wire = new ByteBuffer();
        writer.Write(wire, FrameType.Ping, TransportTestKit.RawBody(page));
        Assert.False(Contains(wire.Data, needle), "plaintext of the page is on the wire");

        // The same frame, authenticated only, carries it in clear text (what "encrypt": false means).
        var (clear, _) = Pair(false, false);
        using var clearWire = new ByteBuffer();
        clear.Write(clearWire, FrameType.Ping, TransportTestKit.RawBody(page));
        Assert.True(Contains(clearWire.Data, page));
        Assert.Equal(clearWire.Count, wire.Count);   // same layout, same size
    }

    [Fact]
    public void TamperedCiphertextIsInvalidWithAReason()
    {
        for (int at = FrameFormat.HeaderSize; at < FrameFormat.HeaderSize + 4 + 64 + FrameFormat.MacSize; at++)
        {
            var (writer, reader) = Pair(true, true);
            using var wire = new ByteBuffer();
            writer.Write(wire, FrameType.Ping, TransportTestKit.RawBody(new byte[64]));
            var bytes = wire.Data.ToArray();
            bytes[at] ^= 0x01;
            Assert.Equal(FrameStatus.Invalid, reader.TryRead(bytes, out _, out _, out _));
            Assert.Contains("bad authentication tag on encrypted frame 1", reader.Error);
        }
    }

    [Fact]
    public void TamperedHeaderOfAnEncryptedFrameIsInvalid()
    {
        var (writer, reader) = Pair(true, true);
        using var wire = new ByteBuffer();
        writer.Write(wire, FrameType.Ping, TransportTestKit.RawBody(new byte[16]));
        var bytes = wire.Data.ToArray();
        bytes[4] = (byte)FrameType.Pong;   // the type is associated data: authenticated, though in clear text
        Assert.Equal(FrameStatus.Invalid, reader.TryRead(bytes, out _, out _, out _));
        Assert.Contains("bad authentication tag", reader.Error);
    }

    [Fact]
    public void AnAuthenticationOnlyReaderRefusesEncryptedFrames()
    {
        var (writer, reader) = Pair(true, false);
        using var wire = new ByteBuffer();
        writer.Write(wire, FrameType.Ping, TransportTestKit.RawBody(new byte[16]));
        Assert.Equal(FrameStatus.Invalid, reader.TryRead(wire.Data, out _, out _, out _));
        Assert.Contains("bad MAC", reader.Error);
    }
}
