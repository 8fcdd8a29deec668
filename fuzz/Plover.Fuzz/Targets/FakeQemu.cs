using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Plover.Config;
using Plover.Interop;
using Plover.Native.Host;

namespace Plover.Fuzz.Targets;

/// <summary>
/// A QEMU for the admin target: the host ABI (<see cref="PloverHostApi"/>) answered by managed functions over one
/// 64-page RAM block and one NIC, and a main thread that runs what the library schedules on it (schedule_main), as
/// QEMU's main loop does. On that thread it creates the library's <see cref="QemuNode"/>s as plover_qemu_init does:
/// one in probe mode, machine ready, and one in replicate mode before machine_ready. Errors the library logs are
/// kept (<see cref="TakeErrors"/>); a fence ends the process (it would end QEMU).
/// </summary>
internal sealed unsafe class FakeQemu
{
    private const int Pages = 64;
    private static readonly BlockingCollection<(nint Fn, nint Opaque)> Scheduled = new();
    private static readonly ConcurrentQueue<string> Errors = new();
    private static bool _running = true;

    public FakeQemu()
    {
        var ready = new TaskCompletionSource<(QemuNode, QemuNode)>();
        var main = new Thread(() => MainLoop(ready)) { IsBackground = true, Name = "fake-qemu-main" };
        main.Start();
        (Probe, Replicate) = ready.Task.GetAwaiter().GetResult();
    }

    public QemuNode Probe { get; }
    public QemuNode Replicate { get; }

    public static List<string> TakeErrors()
    {
        var list = new List<string>();
        while (Errors.TryDequeue(out string? e)) list.Add(e);
        return list;
    }

    private static void MainLoop(TaskCompletionSource<(QemuNode, QemuNode)> ready)
    {
        try
        {
            var host = new QemuHost(Api());
            var probe = Start(host, "probe");
            probe.OnMachineReady();
            var replicate = Start(host, "replicate");
            ready.SetResult((probe, replicate));
        }
        catch (Exception e)
        {
            ready.SetException(e);
            return;
        }
        foreach (var (fn, opaque) in Scheduled.GetConsumingEnumerable())
            ((delegate* unmanaged[Cdecl]<void*, void>)fn)((void*)opaque);
    }

    /// <summary>Public keys of three key pairs made once with plover keygen (the admin target authenticates nobody).</summary>
    private const string Key1 = "em/kgErQKrsQyjeNDpNM15xS5SSZs6enL1jGqNM0V7ulOzlS7C6xsiTrK68Hp43dYQGmPVaJSO/GUTiOka7uwA==";
    private const string Key2 = "nU98E1UhqOHtpCkxiJQCwZ8YN/V7ktJznBHQ7ET45KLzDCwO5f41rrGjSDpNjmWuWZtZmdOuitUbQUCWGGNE/A==";
    private const string Key3 = "wotwX3LS+gBImM+KZwmo75ArThr0sJW5kHUaAStfZj8yayo9z4EUOsmg0qgG4nX3u+qJrjUkZm+y0BHhSw10Yg==";

    private static QemuNode Start(QemuHost host, string mode)
    {
        string json = $$"""
        {"cluster":"fuzz","keyFile":"/nonexistent","mode":"{{mode}}","nodes":[{"id":1,"role":"primary","address":"127.0.0.1:1","publicKey":"{{Key1}}"},
         {"id":2,"role":"backup","address":"127.0.0.1:3","publicKey":"{{Key2}}"},{"id":3,"role":"witness","address":"127.0.0.1:5","publicKey":"{{Key3}}"}]}
        """;
        var config = ClusterConfig.Parse(json, "/");
        return QemuNode.Start(host, config, config.Node(1), "/fuzz.json");
    }

    // ---------------------------------------------------------------- the host ABI

    private static byte* Text(string s) => (byte*)Marshal.StringToCoTaskMemUTF8(s);

    private static PloverHostApi* Api()
    {
        var api = (PloverHostApi*)NativeMemory.AllocZeroed((nuint)sizeof(PloverHostApi));
        api->struct_size = (uint)sizeof(PloverHostApi);
        api->abi_major = PloverAbi.Major;
        api->abi_minor = PloverAbi.Minor;
        api->qemu_version = Text("10.0.13-fuzz");
        api->object_id = Text("plover0");
        api->target_page_size = 4096;
        api->log = &Log;
        api->schedule_main = &ScheduleMain;
        api->fence = &Fence;
        api->accel_name = &AccelName;
        api->vm_is_running = &VmIsRunning;
        api->vm_stop = &VmStop;
        api->vm_start = &VmStart;
        api->ram_blocks = &RamBlocks;
        api->dirty_log_start = &Zero;
        api->dirty_log_stop = &Nothing;
        api->dirty_sync = &DirtySync;
        api->dirty_clear = &Nothing;
        api->dirty_mark_all = &Nothing;
        api->ram_updated = &RamUpdated;
        api->save_device_state = &SaveDeviceState;
        api->load_device_state = &LoadDeviceState;
        api->free_buf = &FreeBuf;
        api->nics = &Nics;
        api->net_inject = &NetInject;
        api->net_out_cut = &NetOutCut;
        api->net_out_release = &NetOutRelease;
        api->net_out_discard = &NetOutRelease;
        api->net_out_mode = &NetOutMode;
        api->net_announce = &Zero;
        api->vcpu_thread_ids = &VcpuThreadIds;
        return api;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Log(int level, byte* message)
    {
        if (level == PloverAbi.LogError) Errors.Enqueue(Marshal.PtrToStringUTF8((nint)message) ?? "");
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int ScheduleMain(delegate* unmanaged[Cdecl]<void*, void> fn, void* opaque)
    {
        Scheduled.Add(((nint)fn, (nint)opaque));
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Fence(byte* why) => Environment.FailFast("the library fenced QEMU: " + Marshal.PtrToStringUTF8((nint)why));

    private static readonly byte* Tcg = Text("tcg");

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static byte* AccelName() => Tcg;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int VmIsRunning() => _running ? 1 : 0;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int VmStop() { _running = false; return 0; }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int VmStart() { _running = true; return 0; }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Zero() => 0;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Nothing() { }

    private static readonly PloverRamBlock* Block = MakeBlock();

    private static PloverRamBlock* MakeBlock()
    {
        var b = (PloverRamBlock*)NativeMemory.AllocZeroed((nuint)sizeof(PloverRamBlock));
        b->name = Text("pc.ram");
        b->host = (byte*)NativeMemory.AlignedAlloc(Pages * 4096, 4096);
        NativeMemory.Clear(b->host, Pages * 4096);
        b->length = Pages * 4096;
        b->host_page_size = 4096;
        b->dirty = (ulong*)NativeMemory.AllocZeroed(8);
        *b->dirty = 0x8000_0000_0000_0005;
        return b;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int RamBlocks(PloverRamBlock** blocks, uint* count)
    {
        *blocks = Block;
        *count = 1;
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static long DirtySync() => 3;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void RamUpdated(uint block, ulong offset, ulong length) { }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int SaveDeviceState(byte** buf, nuint* length)
    {
        *buf = (byte*)NativeMemory.AllocZeroed(100);
        *length = 100;
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int LoadDeviceState(byte* buf, nuint length) => 0;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void FreeBuf(void* buf) => NativeMemory.Free(buf);

    private static readonly PloverNic* Nic = MakeNic();

    private static PloverNic* MakeNic()
    {
        var n = (PloverNic*)NativeMemory.AllocZeroed((nuint)sizeof(PloverNic));
        n->filter_id = Text("plover-f0");
        n->netdev_id = Text("net0");
        n->nic_name = Text("virtio-net-pci.0");
        for (int i = 0; i < 6; i++) n->mac[i] = (byte)(0x52 + i);
        return n;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Nics(PloverNic** nics, uint* count)
    {
        *nics = Nic;
        *count = 1;
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int NetInject(uint nic, uint flags, byte* frame, nuint length) => nic == 0 ? 0 : -22;

    private static ulong _epoch;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static ulong NetOutCut(uint nic) => ++_epoch;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static long NetOutRelease(uint nic, ulong upto) => nic == 0 && upto <= _epoch ? 1 : -22;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int NetOutMode(uint nic, int mode) => nic == 0 ? 0 : -22;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int VcpuThreadIds(int* tids, uint max, uint* count)
    {
        tids[0] = Environment.ProcessId;
        *count = 1;
        return 0;
    }
}
