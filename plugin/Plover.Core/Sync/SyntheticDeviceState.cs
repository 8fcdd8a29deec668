using System.Buffers.Binary;
using System.Text;

namespace Plover.Sync;

/// <summary>
/// Device states in QEMU's vmstate layout for tests and benchmarks: named sections, each a FULL section header,
/// its data and a footer (0x7e, section id). Unlike QEMU's, a synthetic section's data never holds the byte 0x7e,
/// so <see cref="Merge"/> can find where each section ends, as a load into live devices would.
/// </summary>
public static class SyntheticDeviceState
{
    private const byte Footer = 0x7e;

    /// <summary>The stream of these sections (ids 1, 2, ... in order) and where each one starts, then the EOF byte.</summary>
    public static (byte[] State, int[] Starts) Build(IReadOnlyList<(string Name, byte[] Data)> sections)
    {
        var state = new List<byte>();
        var starts = new List<int>();
        Span<byte> be = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(be, DeviceStateSections.FileMagic); state.AddRange(be.ToArray());
        BinaryPrimitives.WriteUInt32BigEndian(be, DeviceStateSections.FileVersion); state.AddRange(be.ToArray());
        for (int i = 0; i < sections.Count; i++)
        {
            var (name, data) = sections[i];
            if (data.Contains(Footer)) throw new ArgumentException($"section {name}: synthetic data may not hold 0x7e");
            starts.Add(state.Count);
            uint id = (uint)i + 1;
            state.Add(DeviceStateSections.SectionFull);
            BinaryPrimitives.WriteUInt32BigEndian(be, id); state.AddRange(be.ToArray());
            state.Add((byte)name.Length);
            state.AddRange(Encoding.ASCII.GetBytes(name));
            BinaryPrimitives.WriteUInt32BigEndian(be, 0); state.AddRange(be.ToArray());   // instance
            BinaryPrimitives.WriteUInt32BigEndian(be, 1); state.AddRange(be.ToArray());   // version
            state.AddRange(data);
            state.Add(Footer);
            BinaryPrimitives.WriteUInt32BigEndian(be, id); state.AddRange(be.ToArray());
        }
        starts.Add(state.Count);
        state.Add(DeviceStateSections.Eof);
        return (state.ToArray(), starts.ToArray());
    }

    /// <summary>The sections of a synthetic stream, by name (throws on a stream it did not build).</summary>
    public static List<(string Name, byte[] Data)> Sections(ReadOnlySpan<byte> state)
    {
        var result = new List<(string, byte[])>();
        if (state.Length < DeviceStateSections.HeaderBytes + 1 || BinaryPrimitives.ReadUInt32BigEndian(state) != DeviceStateSections.FileMagic)
            throw new FormatException("not a vmstate stream");
        int at = DeviceStateSections.HeaderBytes;
        while (state[at] == DeviceStateSections.SectionFull)
        {
            int nameLength = state[at + 5];
            string name = Encoding.ASCII.GetString(state.Slice(at + 6, nameLength));
            int data = at + 6 + nameLength + 8;
            int end = state[data..].IndexOf(Footer);
            if (end < 0) throw new FormatException($"section {name} has no footer");
            result.Add((name, state.Slice(data, end).ToArray()));
            at = data + end + 5;
        }
        if (state[at] != DeviceStateSections.Eof || at != state.Length - 1) throw new FormatException($"no EOF byte at {at}");
        return result;
    }

    /// <summary>What a load of incoming into devices holding current leaves: incoming's sections replace those of the
    /// same name, the others stay.</summary>
    public static (byte[] State, int[] Starts) Merge(ReadOnlySpan<byte> current, ReadOnlySpan<byte> incoming)
    {
        var sections = Sections(current);
        foreach (var (name, data) in Sections(incoming))
        {
            int i = sections.FindIndex(s => s.Name == name);
            if (i < 0) throw new FormatException($"section {name} is not a device of this VM");
            sections[i] = (name, data);
        }
        return Build(sections);
    }
}
