using System.Runtime.InteropServices;

namespace Plover.Interop;

// C# mirror of interop/plover_abi.h, field for field and in the same order, with the C names so that the
// abi_layout_test can compare both sides by name (AbiLayout). Pointers are byte*/nint, function pointers are
// delegate* unmanaged[Cdecl]. Never reorder or insert: ABI 1.x only appends at struct ends.

/// <summary>Constants of plover_abi.h.</summary>
public static class PloverAbi
{
    public const ushort Major = 1;
    public const ushort Minor = 1;
    public const uint Version = (uint)Major << 16 | Minor;

    public const string SymAbiVersion = "plover_qemu_abi_version";
    public const string SymInit = "plover_qemu_init";

    public const int LogError = 0;
    public const int LogWarn = 1;
    public const int LogInfo = 2;
    public const int LogDebug = 3;

    public const int OutHold = 0;
    public const int OutPass = 1;

    public const int NetPass = 0;
    public const int NetConsumed = 1;
}

/// <summary>struct iovec from &lt;sys/uio.h&gt;.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct Iovec
{
    public byte* iov_base;
    public nuint iov_len;
}

/// <summary>One guest RAM block; host-owned, valid from machine_ready until shutdown.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct PloverRamBlock
{
    public uint id;
    public uint flags;
    public byte* name;
    public byte* host;
    public ulong ram_addr;
    public ulong length;
    public ulong host_page_size;
    public ulong* dirty;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct PloverNic
{
    public uint id;
    public uint vnet_hdr_len;
    public byte* filter_id;
    public byte* netdev_id;
    public byte* nic_name;
    public fixed byte mac[6];
    public fixed byte pad[2];
}

/// <summary>What the host (QEMU) offers the library. See plover_abi.h for which calls are ANY-thread.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct PloverHostApi
{
    public uint struct_size;
    public ushort abi_major;
    public ushort abi_minor;
    public byte* qemu_version;
    public byte* object_id;
    public byte* role;
    public byte* config;
    public byte* node;
    public uint target_page_size;
    public uint reserved0;

    // ANY thread
    public delegate* unmanaged[Cdecl]<int, byte*, void> log;
    public delegate* unmanaged[Cdecl]<delegate* unmanaged[Cdecl]<void*, void>, void*, int> schedule_main;
    public delegate* unmanaged[Cdecl]<byte*, void> fence;

    // MAIN thread only
    public delegate* unmanaged[Cdecl]<byte*> accel_name;
    public delegate* unmanaged[Cdecl]<int> vm_is_running;
    public delegate* unmanaged[Cdecl]<int> vm_stop;
    public delegate* unmanaged[Cdecl]<int> vm_start;
    public delegate* unmanaged[Cdecl]<PloverRamBlock**, uint*, int> ram_blocks;
    public delegate* unmanaged[Cdecl]<int> dirty_log_start;
    public delegate* unmanaged[Cdecl]<void> dirty_log_stop;
    public delegate* unmanaged[Cdecl]<long> dirty_sync;
    public delegate* unmanaged[Cdecl]<void> dirty_clear;
    public delegate* unmanaged[Cdecl]<void> dirty_mark_all;
    public delegate* unmanaged[Cdecl]<uint, ulong, ulong, void> ram_updated;
    public delegate* unmanaged[Cdecl]<byte**, nuint*, int> save_device_state;
    public delegate* unmanaged[Cdecl]<byte*, nuint, int> load_device_state;
    public delegate* unmanaged[Cdecl]<void*, void> free_buf;
    public delegate* unmanaged[Cdecl]<PloverNic**, uint*, int> nics;
    public delegate* unmanaged[Cdecl]<uint, uint, byte*, nuint, int> net_inject;
    public delegate* unmanaged[Cdecl]<uint, ulong> net_out_cut;
    public delegate* unmanaged[Cdecl]<uint, ulong, long> net_out_release;
    public delegate* unmanaged[Cdecl]<uint, ulong, long> net_out_discard;
    public delegate* unmanaged[Cdecl]<uint, int, int> net_out_mode;
    public delegate* unmanaged[Cdecl]<int> net_announce;
    public delegate* unmanaged[Cdecl]<int*, uint, uint*, int> vcpu_thread_ids;
    // since 1.1
    public delegate* unmanaged[Cdecl]<byte**, nuint*, uint**, uint*, int> save_device_sections;
}

/// <summary>What the library gives the host; a null hook is never called. All hooks: main thread, BQL held.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct PloverHooks
{
    public uint struct_size;
    public ushort abi_major;
    public ushort abi_minor;
    public void* ctx;
    public delegate* unmanaged[Cdecl]<void*, void> machine_ready;
    public delegate* unmanaged[Cdecl]<void*, int, byte*, void> vm_state_changed;
    public delegate* unmanaged[Cdecl]<void*, uint, uint, Iovec*, int, int> net_to_guest;
    public delegate* unmanaged[Cdecl]<void*, uint, ulong, ulong, ulong, void> net_from_guest;
    public delegate* unmanaged[Cdecl]<void*, void> shutdown;
}
