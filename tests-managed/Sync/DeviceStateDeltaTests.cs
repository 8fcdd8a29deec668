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
        var sections = Parsed(state, starts);
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

    private static DeviceStateSections Parsed(byte[] state, int[] starts)
    {
        var sections = new DeviceStateSections();
        foreach (int s in starts) sections.AddStart(s);
        Assert.True(sections.Parse(state, out string? error), error);
        return sections;
    }

    /// <summary>What the backup loads after the primary's delta against the backup's summary.</summary>
    private static (byte[] Loaded, int Records, int DeltaBytes) RoundTrip((string, byte[])[] primary, (string, byte[])[] backup, string? backupLacks = null)
    {
        var (pState, pStarts) = SyntheticDeviceState.Build(primary);
        var (bState, bStarts) = SyntheticDeviceState.Build(backup);
        if (backupLacks is not null)
        {
            // A section QEMU did not save there (not needed): gone from the stream, the others keep their ids.
            int i = Array.FindIndex(backup, d => d.Item1 == backupLacks), length = bStarts[i + 1] - bStarts[i];
            bState = [.. bState[..bStarts[i]], .. bState[bStarts[i + 1]..]];
            bStarts = [.. bStarts[..(i + 1)], .. bStarts[(i + 1)..].Select(x => x - length)];
        }
        var pSections = Parsed(pState, pStarts);
        var bSections = Parsed(bState, bStarts);
        var summary = new byte[DeviceStateDelta.SummaryLength(bSections)];
        DeviceStateDelta.WriteSummary(bState, bSections, summary);
        var delta = new DeviceStateDelta();
        Assert.True(delta.ReadSummary(summary, bSections.Count, out string? error), error);
        using var wire = new ByteBuffer(1024);
        int records = delta.WriteDelta(pState, pSections, summary, wire);
        using var loaded = new ByteBuffer(1024);
        Assert.True(DeviceStateDelta.Rebuild(bState, bSections, wire.Data, records, loaded, out error), error);
        return (loaded.Data.ToArray(), records, wire.Count);
    }

    [Fact]
    public void APatch_CarriesOnlyTheBlocksThatDiffer_AndRebuildsThePrimarysBytes()
    {
        var primary = Devices();
        primary[3].Item2[1000] = 9;   // one byte of the 4 KB PCI host: one 256-byte block
        var (loaded, records, bytes) = RoundTrip(primary, Devices());
        var sections = SyntheticDeviceState.Sections(loaded);
        Assert.Equal(["cpu", "i440FX", "0000:00:03.0/virtio-net"], sections.Select(x => x.Name));
        Assert.Equal(3, records);
        Assert.Equal(primary[3].Item2, sections[1].Data);
        Assert.True(bytes < 256 + 200, $"{bytes} bytes for one changed block and two equal sections always loaded");
    }

    [Fact]
    public void ASectionTheBackupLacksOrHoldsWithAnotherLength_TravelsWhole()
    {
        var backup = Devices();
        backup[3] = (backup[3].Item1, Bytes(4000, 1));   // i440FX, shorter
        var (loaded, _, bytes) = RoundTrip(Devices("cpu"), backup, backupLacks: "timer");
        var sections = SyntheticDeviceState.Sections(loaded);
        Assert.Equal(["cpu", "timer", "i440FX", "0000:00:03.0/virtio-net"], sections.Select(x => x.Name));
        Assert.Equal(Devices("cpu").Select(d => d.Item2).Where((_, i) => i != 2), sections.Select(x => x.Data));
        Assert.True(bytes > 4096, "the resized section travelled whole");

        // The backup's sections in another order (so with other ids, and other bytes): found by name, all sent, and
        // what the backup loads is the primary's.
        var (reordered, records, _) = RoundTrip(Devices("apic"), Devices().Reverse().ToArray());
        Assert.Equal(5, records);
        Assert.Equal(Devices("apic").Select(d => d.Item2), SyntheticDeviceState.Sections(reordered).Select(x => x.Data));
    }

    [Theory]
    [InlineData(2, 0, 300, "kind 2")]           // unknown kind
    [InlineData(1, 7, 300, "section 7")]        // no such section of the backup
    [InlineData(1, 0, 321, "that one of 322")]  // length differs from the backup's copy (300 bytes of data, 22 framing)
    [InlineData(0, 0, 5000, "5000 bytes")]      // a whole section past the end
    public void ABadDeltaIsRefused_NamingTheRecord(byte kind, int index, int length, string expected)
    {
        var (state, starts) = SyntheticDeviceState.Build(Devices());
        var sections = Parsed(state, starts);
        var delta = new byte[9 + 1 + 300];
        delta[0] = kind;
        BitConverter.TryWriteBytes(delta.AsSpan(1), index);
        BitConverter.TryWriteBytes(delta.AsSpan(5), length);
        using var into = new ByteBuffer(1024);
        Assert.False(DeviceStateDelta.Rebuild(state, sections, delta, 1, into, out string? error));
        Assert.Contains(expected, error);
    }

    [Fact]
    public void AMaskNamingBlocksPastTheSection_OrTrailingBytes_AreRefused()
    {
        var (state, starts) = SyntheticDeviceState.Build(Devices());
        var sections = Parsed(state, starts);
        int cpu = sections[0].Length;   // 2 blocks: a mask byte with bit 2 set names a third
        var delta = new byte[9 + 1];
        delta[0] = 1;
        BitConverter.TryWriteBytes(delta.AsSpan(5), cpu);
        delta[9] = 0b100;
        using var into = new ByteBuffer(1024);
        Assert.False(DeviceStateDelta.Rebuild(state, sections, delta, 1, into, out string? error));
        Assert.Contains("past the 2 blocks", error);
        delta[9] = 0;
        Assert.True(DeviceStateDelta.Rebuild(state, sections, delta, 1, into, out error), error);
        Assert.False(DeviceStateDelta.Rebuild(state, sections, [.. delta, 7], 1, into, out error));
        Assert.Contains("1 bytes past", error);
    }

    [Fact]
    public void ASummaryThatDoesNotAddUp_IsRefused()
    {
        var (state, starts) = SyntheticDeviceState.Build(Devices());
        var sections = Parsed(state, starts);
        var summary = new byte[DeviceStateDelta.SummaryLength(sections)];
        DeviceStateDelta.WriteSummary(state, sections, summary);
        var delta = new DeviceStateDelta();
        Assert.True(delta.ReadSummary(summary, sections.Count, out _));
        Assert.False(delta.ReadSummary(summary, sections.Count + 1, out string? error));
        Assert.Contains("the summary ends", error);
        Assert.False(delta.ReadSummary(summary[..^8], sections.Count, out error));
        Assert.False(delta.ReadSummary(summary, sections.Count - 1, out error));
        Assert.Contains("past its 4 sections", error);
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
