using System.Runtime.InteropServices;
using System.Text;

namespace Plover.Native.Host;

/// <summary>NUL-terminated UTF-8 strings across the ABI.</summary>
internal static unsafe class NativeText
{
    public static string? Read(byte* text) => text == null ? null : Marshal.PtrToStringUTF8((nint)text);

    /// <summary>Writes message into buf (capacity bytes), truncated on a character boundary and always
    /// NUL-terminated; nothing when buf is null or capacity is 0.</summary>
    public static void WriteTruncated(string message, byte* buf, nuint capacity)
    {
        if (buf == null || capacity == 0)
            return;
        byte[] utf8 = Encoding.UTF8.GetBytes(message);
        int n = (int)Math.Min((ulong)utf8.Length, capacity - 1);
        if (n < utf8.Length)
            while (n > 0 && (utf8[n] & 0xC0) == 0x80) // do not cut a multi-byte character in half
                n--;
        utf8.AsSpan(0, n).CopyTo(new Span<byte>(buf, n));
        buf[n] = 0;
    }
}
