using System.Runtime.InteropServices;

namespace Plover.Interop;

// C# mirror of interop/plover_abi.h, field for field and in the same order, with the C names so that the
// abi_layout_test can compare both sides by name (AbiLayout). Pointers are byte*/nint, function pointers are
// delegate* unmanaged[Cdecl]. Never reorder or insert: ABI 1.x only appends at struct ends.

/// <summary>Constants of plover_abi.h.</summary>
public static class PloverAbi
{
    public const ushort Major = 1;
    public const ushort Minor = 2;
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

    // since 1.2
    public const int RoleStarting = 0;
    public const int RolePrimary = 1;
    public const int RoleBackup = 2;
    public const int RoleJoining = 3;
    public const int RoleProbe = 4;

    public const int ModeReplicate = 0;
    public const int ModeCheckpoint = 1;
    public const int ModeProbe = 2;

    public const int EventRoleChanged = 0;
    public const int EventProtectionLost = 1;
    public const int EventProtectionRestored = 2;
    public const int EventFenced = 3;

    public const int CmdStop = 0;
    public const int CmdCont = 1;
    public const int CmdSystemReset = 2;
    public const int CmdSystemPowerdown = 3;

    public const int CmdRun = 0;
    public const int CmdIgnore = 1;
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

/// <summary>Since 1.2: what query-plover reports; the host zeroes it and sets struct_size, the query hook fills it.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct PloverInfo
{
    public uint struct_size;
    public int role;
    public int mode;
    public uint node;
    public uint backup;
    public uint leader;
    public int is_protected;
    public int fenced;
    public int sync_link;
    public uint reserved0;
    public fixed byte problem[256];
    public ulong term;
    public ulong commit_index;
    public ulong last_sync_epoch;
    public long last_sync_unix_us;
    public ulong last_sync_union_pages;
    public ulong last_sync_identical_pages;
    public ulong last_sync_divergent_pages;
    public ulong last_sync_wire_bytes;
    public ulong last_sync_device_state_bytes;
    public ulong last_sync_guest_pause_us;
    public ulong last_sync_total_us;
    public ulong syncs_completed;
    public ulong syncs_aborted;
    public ulong inputs_injected;
    public ulong frames_released;
    public ulong frames_discarded;
    public ulong promotions;
    public ulong demotions;
    public ulong joins;
}

/// <summary>Since 1.2: one QMP event, passed to the host's event function (valid during the call only).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct PloverEvent
{
    public uint struct_size;
    public int kind;
    public int role;
    public int previous_role;
    public ulong term;
    public uint backup;
    public uint reserved0;
    public byte* reason;
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
    // since 1.2
    public delegate* unmanaged[Cdecl]<PloverEvent*, void> @event;
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
    // since 1.2
    public delegate* unmanaged[Cdecl]<void*, PloverInfo*, int> query;
    public delegate* unmanaged[Cdecl]<void*, int, byte*, nuint, int> operator_command;
}
