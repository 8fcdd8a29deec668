namespace Plover.Native.Host;

/// <summary>plover_qemu_init refuses to start: Errno (positive) is returned negated, Message goes to QEMU.</summary>
internal sealed class InitException(int errno, string message) : Exception(message)
{
    public int Errno { get; } = errno;
}

/// <summary>The errno values the library returns.</summary>
internal static class Errno
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EIO = 5;
    public const int ENODEV = 19;
    public const int EEXIST = 17;
    public const int EINVAL = 22;
    public const int EPROTO = 71;
    public const int EADDRINUSE = 98;
    public const int EADDRNOTAVAIL = 99;
}
