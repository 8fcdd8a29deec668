using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Plover.Transport;

/// <summary>
/// A non-blocking send on a socket that stays in blocking mode for its reader and writer threads
/// (send(2) with MSG_DONTWAIT). .NET has no per-call "don't wait" flag, and switching the whole socket to
/// non-blocking would cost the reader an extra poll per read.
/// </summary>
internal static partial class LinuxSocket
{
    private const int MSG_DONTWAIT = 0x40;
    private const int MSG_NOSIGNAL = 0x4000;
    private const int EAGAIN = 11;
    private const int EINTR = 4;

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static unsafe partial nint Send(int fd, byte* buf, nint len, int flags);

    /// <summary>Bytes sent (0 if the socket buffer is full), or -1 on an error (errno in error).</summary>
    public static unsafe int TrySend(Socket socket, ReadOnlySpan<byte> data, out int error)
    {
        error = 0;
        var handle = socket.SafeHandle;
        bool added = false;
        handle.DangerousAddRef(ref added);   // keeps the fd from being closed and reused during the call
        try
        {
        int fd = (int)handle.DangerousGetHandle();
        fixed (byte* p = data)
        {
            while (true)
            {
                nint n = Send(fd, p, data.Length, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n >= 0) return (int)n;
                int errno = Marshal.GetLastPInvokeError();
                if (errno == EINTR) continue;
                if (errno == EAGAIN) return 0;
                error = errno;
                return -1;
            }
        }
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }
}
