using Plover.Transport;

namespace Plover.Sync;

/// <summary>
/// A VM for tests and benchmarks over <see cref="SyntheticGuestMemory"/>: run state, device state bytes, and a
/// record of the host calls. Every call checks it runs on the given main thread, as QEMU requires.
/// </summary>
public sealed class SyntheticVm(SyntheticGuestMemory memory, DedicatedMainThread? main = null) : IVmHost
{
    public SyntheticGuestMemory Memory { get; } = memory;
    public bool Running { get; private set; } = true;
    public byte[] DeviceState { get; set; } = [];
    public int Stops { get; private set; }
    public int Starts { get; private set; }
    public int DeviceStateLoads { get; private set; }
    public long RamUpdatedCalls { get; private set; }
    public ulong RamUpdatedBytes { get; private set; }
    public List<string> Calls { get; } = new();
    /// <summary>Makes LoadDeviceState fail (tests).</summary>
    public bool FailDeviceLoad { get; set; }

    private void OnMain(string call)
    {
        if (main is not null && !main.IsCurrent) throw new InvalidOperationException($"{call} called off the main thread");
        lock (Calls) Calls.Add(call);
    }

    public void Stop() { OnMain("stop"); if (Running) Stops++; Running = false; }
    public void Start() { OnMain("start"); if (!Running) Starts++; Running = true; }

    public long DirtySync()
    {
        OnMain("dirty_sync");
        if (Running) throw new InvalidOperationException("dirty_sync while the VM runs");
        return Memory.DirtySync();
    }

    public void DirtyClear() { OnMain("dirty_clear"); Memory.DirtyClear(); }
    public void DirtyMarkAll() { OnMain("dirty_mark_all"); Memory.DirtyMarkAll(); }

    public void RamUpdated(int block, ulong offset, ulong length)
    {
        if (main is not null && !main.IsCurrent) throw new InvalidOperationException("ram_updated called off the main thread");
        if (Running) throw new InvalidOperationException("ram_updated while the VM runs");
        RamUpdatedCalls++;
        RamUpdatedBytes += length;
    }

    /// <summary>Where DeviceState's sections start (<see cref="SyntheticDeviceState"/>); null: an opaque state, which
    /// save reports without sections and load replaces whole.</summary>
    public int[]? DeviceSectionStarts { get; set; }
    /// <summary>Sections in the last state loaded (all of them for an opaque state).</summary>
    public int LastLoadSections { get; private set; }

    /// <summary>A device state of these sections (see <see cref="SyntheticDeviceState"/>).</summary>
    public void SetDeviceSections(IReadOnlyList<(string Name, byte[] Data)> sections) =>
        (DeviceState, DeviceSectionStarts) = SyntheticDeviceState.Build(sections);

    /// <summary>Runs inside SaveDeviceState, on the main thread (tests: a slow save).</summary>
    public Action? DuringSave { get; set; }

    public void SaveDeviceState(ByteBuffer into, DeviceStateSections sections)
    {
        OnMain("save_device_state");
        if (Running) throw new InvalidOperationException("save_device_state while the VM runs");
        DuringSave?.Invoke();
        DeviceState.CopyTo(into.Append(DeviceState.Length));
        foreach (int start in DeviceSectionStarts ?? []) sections.AddStart(start);
    }

    public void LoadDeviceState(ReadOnlySpan<byte> state)
    {
        OnMain("load_device_state");
        if (Running) throw new InvalidOperationException("load_device_state while the VM runs");
        if (FailDeviceLoad) throw new InvalidOperationException("device state rejected (injected)");
        if (DeviceSectionStarts is null)
        {
            DeviceState = state.ToArray();
            LastLoadSections = 1;
        }
        else
        {
            LastLoadSections = SyntheticDeviceState.Sections(state).Count;
            (DeviceState, DeviceSectionStarts) = SyntheticDeviceState.Merge(DeviceState, state);
        }
        DeviceStateLoads++;
    }
}
