using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Plover.Interop;
using Plover.Native.Host;

namespace Plover.Native.Exports;

/// <summary>
/// The two exports QEMU's loader looks up (interop/plover_abi.h). plover_qemu_init may be called more than once
/// in a process (a NativeAOT library cannot be unloaded, so a test harness reuses one instance): every successful
/// call creates an independent QemuNode with its own threads and hooks ctx, stopped by that ctx's shutdown hook.
/// </summary>
internal static unsafe class InitExports
{
    [UnmanagedCallersOnly(EntryPoint = PloverAbi.SymAbiVersion, CallConvs = [typeof(CallConvCdecl)])]
    public static uint AbiVersion() => PloverAbi.Version;

    [UnmanagedCallersOnly(EntryPoint = PloverAbi.SymInit, CallConvs = [typeof(CallConvCdecl)])]
    public static int Init(PloverHostApi* host, PloverHooks* hooks, byte* err, nuint errlen)
    {
        try
        {
            NativeText.WriteTruncated("", err, errlen);
            InitCheck.Checked ok = InitCheck.Run(host, hooks);
            QemuNode node = QemuNode.Start(ok.Host, ok.Config, ok.Node, ok.ConfigPath);
            HostHooks.Fill(hooks, node);
            return 0;
        }
        catch (InitException e)
        {
            NativeText.WriteTruncated(e.Message, err, errlen);
            return -e.Errno;
        }
        catch (Exception e)
        {
            try
            {
                NativeText.WriteTruncated($"plover_qemu_init failed: {e.GetType().Name}: {e.Message}", err, errlen);
            }
            catch
            {
                // nothing may escape into QEMU
            }
            return -Errno.EIO;
        }
    }
}
