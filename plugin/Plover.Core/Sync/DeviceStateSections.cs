using System.Buffers.Binary;
using System.Text;
using Plover.Hashing;

namespace Plover.Sync;

/// <summary>
/// The sections of one saved device state (QEMU's vmstate stream: an 8-byte header, one FULL section per device,
/// an EOF byte), found from the offsets the host reported, each with a key (its name, instance and version) and a
/// hash of all its bytes. A backup loads only the sections whose hash differs from its own: equal
/// bytes are an equal device state, so loading them would change nothing. Reused across syncs; engine thread only.
/// </summary>
public sealed class DeviceStateSections
{
    public const uint FileMagic = 0x5145564d;     // "QEVM"
    public const uint FileVersion = 3;
    public const int HeaderBytes = 8;
    public const byte SectionFull = 0x04;
    public const byte Eof = 0x00;

    public readonly record struct Section(int Offset, int Length, ulong Key, ulong Hash, bool AlwaysSend);

    private int[] _starts = new int[64];
    private int _startCount;
    private Section[] _sections = new Section[64];

    /// <summary>Sections found by the last <see cref="Parse"/> (0: none, or the offsets were unknown or wrong).</summary>
    public int Count { get; private set; }
    public ref readonly Section this[int i] => ref _sections[i];

    /// <summary>Forgets the offsets (a host that reports none leaves it so: the state is then sent whole).</summary>
    public void Clear() { _startCount = 0; Count = 0; }

    /// <summary>Host: a section starts at offset (the last one added is the EOF byte's offset).</summary>
    public void AddStart(int offset)
    {
        if (_startCount == _starts.Length) Array.Resize(ref _starts, _starts.Length * 2);
        _starts[_startCount++] = offset;
    }

    /// <summary>Splits state at the offsets the host reported, skipping empty sections, and hashes each one. False
    /// with a reason when the offsets do not describe the stream (then nothing may be compared: send it whole).</summary>
    public bool Parse(ReadOnlySpan<byte> state, out string? error)
    {
        Count = 0;
        error = Check(state);
        if (error is not null) return false;
        for (int i = 0; i + 1 < _startCount; i++)
        {
            int start = _starts[i], length = _starts[i + 1] - start;
            if (length == 0) continue;   // a section not needed on this VM
            var bytes = state.Slice(start, length);
            if (!TryHeader(bytes, out int headerLength, out bool always))
            {
                Count = 0;
                error = $"section at offset {start} has no valid FULL section header";
                return false;
            }
            if (Count == _sections.Length) Array.Resize(ref _sections, _sections.Length * 2);
            // Key: name, instance and version (QEMU finds a section by name and instance), not the numeric id.
            _sections[Count++] = new Section(start, length, CityHash.Hash64(bytes[5..headerLength]), CityHash.Hash64(bytes), always);
        }
        return true;
    }

    private string? Check(ReadOnlySpan<byte> state)
    {
        if (_startCount == 0) return "the host reported no section offsets";
        if (state.Length < HeaderBytes + 1 || BinaryPrimitives.ReadUInt32BigEndian(state) != FileMagic
            || BinaryPrimitives.ReadUInt32BigEndian(state[4..]) != FileVersion)
            return "the device state has no vmstate file header";
        if (_starts[0] != HeaderBytes) return $"the first section starts at {_starts[0]}, not after the header";
        for (int i = 1; i < _startCount; i++)
            if (_starts[i] < _starts[i - 1]) return $"section offsets go backwards at {_starts[i]}";
        int eof = _starts[_startCount - 1];
        if (eof != state.Length - 1 || state[eof] != Eof) return $"the EOF byte is not at offset {eof} of {state.Length}";
        return null;
    }

    /// <summary>Type 0x04, section id (u32), name length (u8), name, instance id (u32), version (u32).</summary>
    private static bool TryHeader(ReadOnlySpan<byte> section, out int headerLength, out bool alwaysSend)
    {
        headerLength = 0;
        alwaysSend = false;
        if (section.Length < 6 || section[0] != SectionFull) return false;
        int nameLength = section[5];
        headerLength = 6 + nameLength + 8;
        if (section.Length < headerLength) return false;
        alwaysSend = AlwaysSent(section.Slice(6, nameLength));
        return true;
    }

    /// <summary>
    /// Sections loaded even when equal (they travel as a patch of the blocks that differ, often none). CPUs: the
    /// issue's rule, registers are what always moves. virtio devices: their load also recomputes what they cache
    /// from guest RAM (ring indices), which the page transfer may just have changed; a device left unloaded would
    /// keep indices read from the backup's own RAM.
    /// </summary>
    public static bool AlwaysSent(ReadOnlySpan<byte> name) =>
        name.SequenceEqual("cpu"u8) || name.IndexOf("virtio"u8) >= 0;

    /// <summary>The section's name (idstr), for logs and tests.</summary>
    public string Name(int i, ReadOnlySpan<byte> state) =>
        Encoding.ASCII.GetString(state.Slice(_sections[i].Offset + 6, state[_sections[i].Offset + 5]));
}
