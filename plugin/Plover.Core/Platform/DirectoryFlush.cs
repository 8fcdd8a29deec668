using System.Runtime.InteropServices;

namespace Plover.Platform;

/// <summary>
/// fsync of a folder: a file renamed into place is durable only once its folder's entry is on disk too (rename(2)
/// alone may come back after a power loss as the old name). .NET has no call for it.
/// </summary>
public static partial class DirectoryFlush
{
    public static void Flush(string directory)
    {
        int fd = Open(directory, ORdonly | ODirectory | OCloexec);
        if (fd < 0)
            throw new IOException($"cannot open the folder {directory} to flush it: errno {Marshal.GetLastPInvokeError()}");
        try
        {
            if (Fsync(fd) < 0)
                throw new IOException($"cannot flush the folder {directory}: errno {Marshal.GetLastPInvokeError()}");
        }
        finally
        {
            Close(fd);
        }
    }

    private const int ORdonly = 0, ODirectory = 0x10000, OCloexec = 0x80000;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
