using Plover.Transport;

namespace Plover.Sync;

/// <summary>
/// VM control offered by the host (QEMU: PloverHostApi). Every method here is MAIN-thread only: the engine calls
/// them exclusively inside actions it runs through <see cref="IMainThread"/>, which are short and never wait on
/// the network. Errors are reported by throwing (the engine aborts the sync and logs the reason).
/// </summary>
public interface IVmHost
{
    /// <summary>vm_stop: synchronous; a no-op when already stopped.</summary>
    void Stop();
    /// <summary>vm_start.</summary>
    void Start();
    /// <summary>dirty_sync (VM stopped): OR the dirt logged since the last call into the blocks' bitmaps; returns bits set.</summary>
    long DirtySync();
    /// <summary>dirty_clear: zero every block's bitmap.</summary>
    void DirtyClear();
    /// <summary>dirty_mark_all: set every bit (a full sync: a joining or returning backup).</summary>
    void DirtyMarkAll();
    /// <summary>ram_updated: the library wrote [offset, offset+length) of block (TCG drops translated code there).</summary>
    void RamUpdated(int block, ulong offset, ulong length);
    /// <summary>save_device_state: append the full non-RAM device state to into (the host copies it once) and, if the
    /// host knows them, where its sections start (<see cref="DeviceStateSections.AddStart"/>, offsets into what was
    /// appended; both come in empty).</summary>
    void SaveDeviceState(ByteBuffer into, DeviceStateSections sections);
    /// <summary>load_device_state (VM stopped, after RAM).</summary>
    void LoadDeviceState(ReadOnlySpan<byte> state);
}
