using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Plover.Config;
using Plover.Interop;

namespace Plover.Native.Host;

/// <summary>
/// The PloverHooks entry points. Each resolves ctx (a GCHandle to the QemuNode) and wraps its body in try/catch:
/// an exception escaping into QEMU would kill it, so it is logged through the host instead. The GCHandle is
/// never freed: a hook called after shutdown finds a stopped node rather than a dangling handle (one small
/// object per init).
/// </summary>
internal static unsafe class HostHooks
{
    public static void Fill(PloverHooks* hooks, QemuNode node)
    {
        *hooks = default;
        hooks->struct_size = (uint)sizeof(PloverHooks);
        hooks->abi_major = PloverAbi.Major;
        hooks->abi_minor = PloverAbi.Minor;
        hooks->ctx = (void*)GCHandle.ToIntPtr(GCHandle.Alloc(node));
        hooks->machine_ready = &MachineReady;
        hooks->vm_state_changed = &VmStateChanged;
        hooks->net_to_guest = &NetToGuest;
        hooks->net_from_guest = &NetFromGuest;
        hooks->shutdown = &Shutdown;
        hooks->query = &Query;
        hooks->operator_command = &OperatorCommand;
    }

    private static QemuNode? Resolve(void* ctx)
    {
        if (ctx == null)
            return null;
        var node = GCHandle.FromIntPtr((nint)ctx).Target as QemuNode;
        if (node is not { Stopped: false })
            return null;
        if (!node.Host.OnMainThread) // a host bug; QEMU's other threads must never run library code
            throw new InvalidOperationException("hook called off QEMU's main thread; ignored");
        return node;
    }

    private static void Report(void* ctx, string hook, Exception e)
    {
        try
        {
            string message = $"hook {hook} failed: {e.GetType().Name}: {e.Message}";
            if (ctx != null && GCHandle.FromIntPtr((nint)ctx).Target is QemuNode node)
                node.Host.Error(message); // the host prefixes its own "plover: "
            else
                Console.Error.WriteLine("plover: " + message);
        }
        catch
        {
            // nothing may escape into QEMU, not even a failure to report
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void MachineReady(void* ctx)
    {
        try
        {
            Resolve(ctx)?.OnMachineReady();
        }
        catch (Exception e)
        {
            Report(ctx, "machine_ready", e);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void VmStateChanged(void* ctx, int running, byte* runstate)
    {
        try
        {
            Resolve(ctx)?.OnVmStateChanged(running != 0, NativeText.Read(runstate) ?? "");
        }
        catch (Exception e)
        {
            Report(ctx, "vm_state_changed", e);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int NetToGuest(void* ctx, uint nic, uint flags, Iovec* iov, int iovcnt)
    {
        try
        {
            return Resolve(ctx)?.OnNetToGuest(nic, iov, iovcnt) ?? PloverAbi.NetPass;
        }
        catch (Exception e)
        {
            Report(ctx, "net_to_guest", e);
            return FailClosed(ctx);
        }
    }

    /// <summary>A frame the input hook could not take is dropped and counted, never passed into the guest: in
    /// replicate mode nothing may reach it without going through the log (only probe mode passes it on).</summary>
    private static int FailClosed(void* ctx)
    {
        try
        {
            if (ctx != null && GCHandle.FromIntPtr((nint)ctx).Target is QemuNode node)
            {
                if (node.Mode == LibraryMode.Probe) return PloverAbi.NetPass;
                node.CountInputDroppedOnError();
            }
        }
        catch
        {
            // nothing may escape into QEMU
        }
        return PloverAbi.NetConsumed;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void NetFromGuest(void* ctx, uint nic, ulong epoch, ulong heldPkts, ulong heldBytes)
    {
        try
        {
            Resolve(ctx)?.OnNetFromGuest(nic, epoch, heldPkts, heldBytes);
        }
        catch (Exception e)
        {
            Report(ctx, "net_from_guest", e);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Query(void* ctx, PloverInfo* info)
    {
        try
        {
            if (info == null) return -Errno.EINVAL;
            if (Resolve(ctx) is not { } node) return -Errno.ENODEV;
            QmpSupport.Fill(node, info);
            return 0;
        }
        catch (Exception e)
        {
            Report(ctx, "query", e);
            return -Errno.EIO;
        }
    }

    /// <summary>An operator's VM command; on any failure it is refused (never run behind the library's back).</summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int OperatorCommand(void* ctx, int command, byte* err, nuint errlen)
    {
        try
        {
            if (Resolve(ctx) is not { } node)
            {
                NativeText.WriteTruncated("the Plover library has stopped", err, errlen);
                return -Errno.ENODEV;
            }
            int? answer = QmpSupport.OperatorCommand(node, command, out string? refusal);
            if (answer is { } a) return a;
            NativeText.WriteTruncated(refusal ?? "refused", err, errlen);
            return -Errno.EPERM;
        }
        catch (Exception e)
        {
            Report(ctx, "operator_command", e);
            try { NativeText.WriteTruncated($"refused: the library failed to decide ({e.Message})", err, errlen); }
            catch { /* nothing may escape into QEMU */ }
            return -Errno.EIO;
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Shutdown(void* ctx)
    {
        try
        {
            Resolve(ctx)?.OnShutdown();
        }
        catch (Exception e)
        {
            Report(ctx, "shutdown", e);
        }
    }
}
