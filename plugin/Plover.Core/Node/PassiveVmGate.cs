using Plover.Sync;
using Plover.Transport;

namespace Plover.Node;

/// <summary>
/// The VM as a checkpointing backup sees it: while <c>holdStopped</c> says so, vm_start does nothing, so the guest
/// never runs and its RAM stays exactly the last checkpoint applied. Every other call passes through. The sync
/// engine and the replica both start the VM through this gate; a promotion opens it.
/// </summary>
public sealed class PassiveVmGate(IVmHost vm, Func<bool> holdStopped) : IVmHost
{
    public void Start()
    {
        if (!holdStopped()) vm.Start();
    }

    public void Stop() => vm.Stop();
    public long DirtySync() => vm.DirtySync();
    public void DirtyClear() => vm.DirtyClear();
    public void DirtyMarkAll() => vm.DirtyMarkAll();
    public void RamUpdated(int block, ulong offset, ulong length) => vm.RamUpdated(block, offset, length);
    public void SaveDeviceState(ByteBuffer into, DeviceStateSections sections) => vm.SaveDeviceState(into, sections);
    public void LoadDeviceState(ReadOnlySpan<byte> state) => vm.LoadDeviceState(state);
}
