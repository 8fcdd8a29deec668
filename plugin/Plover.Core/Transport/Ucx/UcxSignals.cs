using System.Runtime.InteropServices;

namespace Plover.Transport.Ucx;

/// <summary>
/// Keeps UCX's error signal handlers out of the process. When libucs loads it installs its own handlers for SIGSEGV,
/// SIGBUS, SIGILL and SIGFPE (UCX_ERROR_SIGNALS) in place of the .NET runtime's, which raises NullReferenceException
/// from a SIGSEGV: every null dereference, even one the code catches, then ends the process ("Caught signal 11"),
/// and inside QEMU the guest with it. Must run before the first call into UCX loads it; an operator's own
/// UCX_ERROR_SIGNALS is left alone.
/// </summary>
internal static partial class UcxSignals
{
    private static int _done;

    public static void KeepRuntimeHandlers()
    {
        if (Interlocked.Exchange(ref _done, 1) != 0) return;
        // The C environment, not .NET's copy of it: libucs reads getenv() when it loads.
        setenv("UCX_ERROR_SIGNALS", "", overwrite: 0);
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);
}
