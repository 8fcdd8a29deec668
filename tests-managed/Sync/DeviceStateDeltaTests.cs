using Plover.Sync;
using Plover.Transport;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>
/// Device state by section (issue 18 item 4): the backup saves its own device state at the cut and sends a hash per
/// section; the primary sends only the sections that differ, plus CPUs and virtio devices; the backup ends with the
/// primary's device state either way.
/// </summary>
public class DeviceStateDeltaTests
{
    private static readonly (string, ulong)[] Layout = [("pc.ram", 1UL << 20)];

    private static byte[] Bytes(int length, byte value) => Enumerable.Repeat(value, length).ToArray();

    /// <summary>A VM's devices: a CPU, a timer, an APIC, a large PCI host, a virtio NIC; differ names the ones
    /// whose state this VM's own execution changed.</summary>
    private static (string, byte[])[] Devices(params string[] differ)
    {
        byte V(string name) => differ.Contains(name) ? (byte)2 : (byte)1;
        return [("cpu", Bytes(300, V("cpu"))), ("timer", Bytes(40, V("timer"))), ("apic", Bytes(100, V("apic"))),
                ("i440FX", Bytes(4096, V("i440FX"))), ("0000:00:03.0/virtio-net", Bytes(500, V("virtio")))];
    }

    private static SyncPair Pair(SyncOptions? options = null)
    {
        options ??= new SyncOptions { Log = _ => { } };
        var pair = new SyncPair(Layout, options, options);
        pair.PrimaryVm.SetDeviceSections(Devices("cpu", "apic"));
        pair.BackupVm.SetDeviceSections(Devices());
        return pair;
    }

    [Fact]
    public void Sections_AreFoundAtTheHostsOffsets_WithTheirNames()
    {
        var (state, starts) = SyntheticDeviceState.Build(Devices());
        var sections = new DeviceStateSections();
        foreach (int s in starts) sections.AddStart(s);
        Assert.True(sections.Parse(state, out string? error), error);
        Assert.Equal(5, sections.Count);
        Assert.Equal(["cpu", "timer", "apic", "i440FX", "0000:00:03.0/virtio-net"], Enumerable.Range(0, 5).Select(i => sections.Name(i, state)));
        Assert.Equal([true, false, false, false, true], Enumerable.Range(0, 5).Select(i => sections[i].AlwaysSend));
        Assert.Equal(state.Length - 1, sections[4].Offset + sections[4].Length);
    }

    [Fact]
    public void OffsetsThatDoNotDescribeTheStream_AreRefused()
    {
        var (state, starts) = SyntheticDeviceState.Build(Devices());
        string? Refusal(int[] offsets, byte[] bytes)
        {
            var sections = new DeviceStateSections();
            foreach (int s in offsets) sections.AddStart(s);
            Assert.False(sections.Parse(bytes, out string? error));
            Assert.Equal(0, sections.Count);
            return error;
        }
        Assert.Contains("no section offsets", Refusal([], state));
        Assert.Contains("first section starts at 9", Refusal([9, .. starts[1..]], state));
        Assert.Contains("go backwards", Refusal([starts[0], starts[2], starts[1], .. starts[3..]], state));
        Assert.Contains("EOF byte", Refusal(starts[..^1], state));
        Assert.Contains("no valid FULL section header", Refusal([starts[0], starts[1] + 1, .. starts[2..]], state));
        Assert.Contains("no vmstate file header", Refusal(starts, [0, 1, 2, .. state[3..]]));
    }

    [Fact]
    public void OnlyTheSectionsThatDiffer_AndCpusAndVirtio_Travel()
    {
        using var pair = Pair();
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
        Assert.Equal((5u, 3u), (p.DeviceSections, p.DeviceSectionsSent));   // cpu, apic, virtio
        Assert.Equal((5u, 3u), (b.DeviceSections, b.DeviceSectionsSent));
        Assert.Equal(3, pair.BackupVm.LastLoadSections);
        Assert.True(p.DeviceStateBytes < 1200, $"{p.DeviceStateBytes} bytes sent: the 4 KB PCI host travelled");
        Assert.Equal(p.DeviceStateBytes, b.DeviceStateBytes);
        Assert.Equal((ulong)pair.PrimaryVm.DeviceState.Length, p.DeviceStateSavedBytes);
        Assert.Contains("save_device_state", pair.BackupVm.Calls);

        // The next sync: only the CPU and virtio, the apic is equal now.
        pair.PrimaryVm.SetDeviceSections(Devices("cpu", "timer"));
        pair.BackupVm.SetDeviceSections(Devices("timer"));
        (p, b) = pair.Sync(2);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal((5u, 2u), (p.DeviceSections, p.DeviceSectionsSent));
        Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
    }

    [Fact]
    public void AFullSync_SendsEverySection_AndTheBackupSavesNothing()
    {
        using var pair = Pair();
        var (p, b) = pair.Sync(1, full: true);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal((5u, 5u), (p.DeviceSections, p.DeviceSectionsSent));
        Assert.Equal(5, pair.BackupVm.LastLoadSections);
        Assert.DoesNotContain("save_device_state", pair.BackupVm.Calls);
        Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
    }

    [Fact]
    public void WithTheDeltaOff_EverySectionTravels()
    {
        using var pair = Pair(new SyncOptions { DeviceStateDelta = false, Log = _ => { } });
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(5u, p.DeviceSectionsSent);
        Assert.DoesNotContain("save_device_state", pair.BackupVm.Calls);
        Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
    }

    [Fact]
    public void ABackupWhoseHostReportsNoSections_GetsEverySection()
    {
        using var pair = Pair();
        pair.BackupVm.DeviceSectionStarts = null;   // an opaque state: the backup can send no hashes
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal((5u, 5u), (p.DeviceSections, p.DeviceSectionsSent));
        Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
    }

    [Fact]
    public void APrimaryWhoseHostReportsNoSections_SendsItsStateWhole()
    {
        using var pair = new SyncPair(Layout, new SyncOptions { Log = _ => { } }, new SyncOptions { Log = _ => { } });
        pair.PrimaryVm.DeviceState = [9, 8, 7, 6];   // opaque, as a host without save_device_sections
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal(0u, p.DeviceSections);
        Assert.Equal(4ul, p.DeviceStateBytes);
        Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
    }

    [Fact]
    public void ASectionTheBackupLacks_Travels()
    {
        var sections = new DeviceStateSections();
        var (state, starts) = SyntheticDeviceState.Build(Devices("cpu", "apic"));
        foreach (int s in starts) sections.AddStart(s);
        Assert.True(sections.Parse(state, out _));

        // The backup's pairs without the timer's (a section not needed there): the timer is sent.
        var (backupState, backupStarts) = SyntheticDeviceState.Build(Devices());
        var backup = new DeviceStateSections();
        foreach (int s in backupStarts) backup.AddStart(s);
        Assert.True(backup.Parse(backupState, out _));
        var pairs = new byte[backup.Count * DeviceStateSections.PairBytes];
        backup.WritePairs(pairs);
        var withoutTimer = pairs[..DeviceStateSections.PairBytes].Concat(pairs[(2 * DeviceStateSections.PairBytes)..]).ToArray();
        using var delta = new ByteBuffer(1024);
        Assert.Equal(4, sections.WriteDelta(state, withoutTimer, delta));   // cpu, timer, apic, virtio
        Assert.Equal(["cpu", "timer", "apic", "0000:00:03.0/virtio-net"], SyntheticDeviceState.Sections(delta.Data).Select(s => s.Name));

        // And with every pair but in another order, the same three as in a sync.
        var reversed = Enumerable.Range(0, backup.Count).Reverse().SelectMany(i => pairs.Skip(i * DeviceStateSections.PairBytes).Take(DeviceStateSections.PairBytes)).ToArray();
        delta.Clear();
        Assert.Equal(3, sections.WriteDelta(state, reversed, delta));
    }

    [Fact]
    public void Checkpoints_SendTheWholeState()
    {
        var options = new SyncOptions { Checkpoint = true, Log = _ => { } };
        using var pair = Pair(options);
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.Equal((5u, 5u), (p.DeviceSections, p.DeviceSectionsSent));
        Assert.Equal(pair.PrimaryVm.DeviceState, pair.BackupVm.DeviceState);
    }
}
