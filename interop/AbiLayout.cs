namespace Plover.Interop;

/// <summary>
/// Size and field offsets of every mirror struct, measured on real instances (address of the field minus the
/// address of the struct), keyed by the C names. libplover.so exports it as plover_abi_layout so that the native
/// abi_layout_test can compare it with the C compiler's sizeof/offsetof for plover_abi.h.
/// </summary>
public static unsafe class AbiLayout
{
    /// <summary>type -> (field -> offset); the size is under the key "" .</summary>
    public static readonly IReadOnlyDictionary<string, IReadOnlyDictionary<string, long>> Types = Measure();

    /// <summary>sizeof(type) when field is null, offsetof(type, field) otherwise; -1 for an unknown name.</summary>
    public static long Query(string type, string? field)
    {
        if (!Types.TryGetValue(type, out var fields))
            return -1;
        return fields.TryGetValue(field ?? "", out long value) ? value : -1;
    }

    private static Dictionary<string, IReadOnlyDictionary<string, long>> Measure()
    {
        var types = new Dictionary<string, IReadOnlyDictionary<string, long>>();

        Iovec iov;
        byte* v = (byte*)&iov;
        types["struct iovec"] = new Dictionary<string, long>
        {
            [""] = sizeof(Iovec),
            [nameof(iov.iov_base)] = (byte*)&iov.iov_base - v,
            [nameof(iov.iov_len)] = (byte*)&iov.iov_len - v,
        };

        PloverRamBlock rb;
        byte* r = (byte*)&rb;
        types[nameof(PloverRamBlock)] = new Dictionary<string, long>
        {
            [""] = sizeof(PloverRamBlock),
            [nameof(rb.id)] = (byte*)&rb.id - r,
            [nameof(rb.flags)] = (byte*)&rb.flags - r,
            [nameof(rb.name)] = (byte*)&rb.name - r,
            [nameof(rb.host)] = (byte*)&rb.host - r,
            [nameof(rb.ram_addr)] = (byte*)&rb.ram_addr - r,
            [nameof(rb.length)] = (byte*)&rb.length - r,
            [nameof(rb.host_page_size)] = (byte*)&rb.host_page_size - r,
            [nameof(rb.dirty)] = (byte*)&rb.dirty - r,
        };

        PloverNic nic;
        byte* n = (byte*)&nic;
        types[nameof(PloverNic)] = new Dictionary<string, long>
        {
            [""] = sizeof(PloverNic),
            [nameof(nic.id)] = (byte*)&nic.id - n,
            [nameof(nic.vnet_hdr_len)] = (byte*)&nic.vnet_hdr_len - n,
            [nameof(nic.filter_id)] = (byte*)&nic.filter_id - n,
            [nameof(nic.netdev_id)] = (byte*)&nic.netdev_id - n,
            [nameof(nic.nic_name)] = (byte*)&nic.nic_name - n,
            [nameof(nic.mac)] = nic.mac - n,
            [nameof(nic.pad)] = nic.pad - n,
        };

        PloverHostApi host;
        byte* h = (byte*)&host;
        types[nameof(PloverHostApi)] = new Dictionary<string, long>
        {
            [""] = sizeof(PloverHostApi),
            [nameof(host.struct_size)] = (byte*)&host.struct_size - h,
            [nameof(host.abi_major)] = (byte*)&host.abi_major - h,
            [nameof(host.abi_minor)] = (byte*)&host.abi_minor - h,
            [nameof(host.qemu_version)] = (byte*)&host.qemu_version - h,
            [nameof(host.object_id)] = (byte*)&host.object_id - h,
            [nameof(host.role)] = (byte*)&host.role - h,
            [nameof(host.config)] = (byte*)&host.config - h,
            [nameof(host.node)] = (byte*)&host.node - h,
            [nameof(host.target_page_size)] = (byte*)&host.target_page_size - h,
            [nameof(host.reserved0)] = (byte*)&host.reserved0 - h,
            [nameof(host.log)] = (byte*)&host.log - h,
            [nameof(host.schedule_main)] = (byte*)&host.schedule_main - h,
            [nameof(host.fence)] = (byte*)&host.fence - h,
            [nameof(host.accel_name)] = (byte*)&host.accel_name - h,
            [nameof(host.vm_is_running)] = (byte*)&host.vm_is_running - h,
            [nameof(host.vm_stop)] = (byte*)&host.vm_stop - h,
            [nameof(host.vm_start)] = (byte*)&host.vm_start - h,
            [nameof(host.ram_blocks)] = (byte*)&host.ram_blocks - h,
            [nameof(host.dirty_log_start)] = (byte*)&host.dirty_log_start - h,
            [nameof(host.dirty_log_stop)] = (byte*)&host.dirty_log_stop - h,
            [nameof(host.dirty_sync)] = (byte*)&host.dirty_sync - h,
            [nameof(host.dirty_clear)] = (byte*)&host.dirty_clear - h,
            [nameof(host.dirty_mark_all)] = (byte*)&host.dirty_mark_all - h,
            [nameof(host.ram_updated)] = (byte*)&host.ram_updated - h,
            [nameof(host.save_device_state)] = (byte*)&host.save_device_state - h,
            [nameof(host.load_device_state)] = (byte*)&host.load_device_state - h,
            [nameof(host.free_buf)] = (byte*)&host.free_buf - h,
            [nameof(host.nics)] = (byte*)&host.nics - h,
            [nameof(host.net_inject)] = (byte*)&host.net_inject - h,
            [nameof(host.net_out_cut)] = (byte*)&host.net_out_cut - h,
            [nameof(host.net_out_release)] = (byte*)&host.net_out_release - h,
            [nameof(host.net_out_discard)] = (byte*)&host.net_out_discard - h,
            [nameof(host.net_out_mode)] = (byte*)&host.net_out_mode - h,
            [nameof(host.net_announce)] = (byte*)&host.net_announce - h,
            [nameof(host.vcpu_thread_ids)] = (byte*)&host.vcpu_thread_ids - h,
            [nameof(host.save_device_sections)] = (byte*)&host.save_device_sections - h,
            ["event"] = (byte*)&host.@event - h,
        };

        PloverHooks hooks;
        byte* k = (byte*)&hooks;
        types[nameof(PloverHooks)] = new Dictionary<string, long>
        {
            [""] = sizeof(PloverHooks),
            [nameof(hooks.struct_size)] = (byte*)&hooks.struct_size - k,
            [nameof(hooks.abi_major)] = (byte*)&hooks.abi_major - k,
            [nameof(hooks.abi_minor)] = (byte*)&hooks.abi_minor - k,
            [nameof(hooks.ctx)] = (byte*)&hooks.ctx - k,
            [nameof(hooks.machine_ready)] = (byte*)&hooks.machine_ready - k,
            [nameof(hooks.vm_state_changed)] = (byte*)&hooks.vm_state_changed - k,
            [nameof(hooks.net_to_guest)] = (byte*)&hooks.net_to_guest - k,
            [nameof(hooks.net_from_guest)] = (byte*)&hooks.net_from_guest - k,
            [nameof(hooks.shutdown)] = (byte*)&hooks.shutdown - k,
            [nameof(hooks.query)] = (byte*)&hooks.query - k,
            [nameof(hooks.operator_command)] = (byte*)&hooks.operator_command - k,
        };

        PloverInfo info;
        byte* q = (byte*)&info;
        types[nameof(PloverInfo)] = new Dictionary<string, long>
        {
            [""] = sizeof(PloverInfo),
            [nameof(info.struct_size)] = (byte*)&info.struct_size - q,
            [nameof(info.role)] = (byte*)&info.role - q,
            [nameof(info.mode)] = (byte*)&info.mode - q,
            [nameof(info.node)] = (byte*)&info.node - q,
            [nameof(info.backup)] = (byte*)&info.backup - q,
            [nameof(info.leader)] = (byte*)&info.leader - q,
            [nameof(info.is_protected)] = (byte*)&info.is_protected - q,
            [nameof(info.fenced)] = (byte*)&info.fenced - q,
            [nameof(info.sync_link)] = (byte*)&info.sync_link - q,
            [nameof(info.reserved0)] = (byte*)&info.reserved0 - q,
            [nameof(info.term)] = (byte*)&info.term - q,
            [nameof(info.commit_index)] = (byte*)&info.commit_index - q,
            [nameof(info.last_sync_epoch)] = (byte*)&info.last_sync_epoch - q,
            [nameof(info.last_sync_unix_us)] = (byte*)&info.last_sync_unix_us - q,
            [nameof(info.last_sync_union_pages)] = (byte*)&info.last_sync_union_pages - q,
            [nameof(info.last_sync_identical_pages)] = (byte*)&info.last_sync_identical_pages - q,
            [nameof(info.last_sync_divergent_pages)] = (byte*)&info.last_sync_divergent_pages - q,
            [nameof(info.last_sync_wire_bytes)] = (byte*)&info.last_sync_wire_bytes - q,
            [nameof(info.last_sync_device_state_bytes)] = (byte*)&info.last_sync_device_state_bytes - q,
            [nameof(info.last_sync_guest_pause_us)] = (byte*)&info.last_sync_guest_pause_us - q,
            [nameof(info.last_sync_total_us)] = (byte*)&info.last_sync_total_us - q,
            [nameof(info.syncs_completed)] = (byte*)&info.syncs_completed - q,
            [nameof(info.syncs_aborted)] = (byte*)&info.syncs_aborted - q,
            [nameof(info.inputs_injected)] = (byte*)&info.inputs_injected - q,
            [nameof(info.frames_released)] = (byte*)&info.frames_released - q,
            [nameof(info.frames_discarded)] = (byte*)&info.frames_discarded - q,
            [nameof(info.promotions)] = (byte*)&info.promotions - q,
            [nameof(info.demotions)] = (byte*)&info.demotions - q,
            [nameof(info.joins)] = (byte*)&info.joins - q,
            [nameof(info.problem)] = info.problem - q,
        };

        PloverEvent ev;
        byte* e = (byte*)&ev;
        types[nameof(PloverEvent)] = new Dictionary<string, long>
        {
            [""] = sizeof(PloverEvent),
            [nameof(ev.struct_size)] = (byte*)&ev.struct_size - e,
            [nameof(ev.kind)] = (byte*)&ev.kind - e,
            [nameof(ev.role)] = (byte*)&ev.role - e,
            [nameof(ev.previous_role)] = (byte*)&ev.previous_role - e,
            [nameof(ev.term)] = (byte*)&ev.term - e,
            [nameof(ev.backup)] = (byte*)&ev.backup - e,
            [nameof(ev.reserved0)] = (byte*)&ev.reserved0 - e,
            [nameof(ev.reason)] = (byte*)&ev.reason - e,
        };
        return types;
    }
}
