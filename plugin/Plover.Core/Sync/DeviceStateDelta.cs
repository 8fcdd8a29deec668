using System.Buffers.Binary;
using Plover.Hashing;
using Plover.Transport;

namespace Plover.Sync;

/// <summary>
/// The device state delta of a sync. The backup describes its own sections (key, hash, length and a hash per
/// 256-byte block); the primary sends, for each of its sections the backup lacks, holds with other bytes or must
/// load anyway, either the section whole or, when the backup's has the same length, only the blocks that differ;
/// the backup rebuilds those sections from its own bytes and loads a vmstate stream of them. Wire formats, all
/// little-endian:
/// <code>
///   summary (backup): per section  u64 key, u64 hash, u32 length, u32 blocks, blocks x u64 block hash
///   delta (primary):  per section  u8 kind (0 whole, 1 patch), u32 backup's section index, u32 length, then
///                                  whole: the bytes; patch: a mask of ceil(blocks / 8) bytes, then the set blocks
/// </code>
/// Engine thread only; the buffers are reused across syncs.
/// </summary>
public sealed class DeviceStateDelta
{
    public const int BlockBytes = 256;
    private const int SummaryHeader = 24, RecordHeader = 9;

    private readonly record struct PeerSection(ulong Key, ulong Hash, int Length, int BlockHashes);
    private PeerSection[] _peer = new PeerSection[64];
    private int _peerCount;
    private byte[] _mask = new byte[64];

    public static int Blocks(int length) => (length + BlockBytes - 1) / BlockBytes;

    private static ulong BlockHash(ReadOnlySpan<byte> section, int block) =>
        CityHash.Hash64(section.Slice(block * BlockBytes, Math.Min(BlockBytes, section.Length - block * BlockBytes)));

    /// <summary>Backup: the summary's size for these sections.</summary>
    public static int SummaryLength(DeviceStateSections sections)
    {
        int n = 0;
        for (int i = 0; i < sections.Count; i++) n += SummaryHeader + 8 * Blocks(sections[i].Length);
        return n;
    }

    /// <summary>Backup: writes the summary of its own state (exactly <see cref="SummaryLength"/> bytes).</summary>
    public static void WriteSummary(ReadOnlySpan<byte> state, DeviceStateSections sections, Span<byte> into)
    {
        int at = 0;
        for (int i = 0; i < sections.Count; i++)
        {
            ref readonly var s = ref sections[i];
            var bytes = state.Slice(s.Offset, s.Length);
            int blocks = Blocks(s.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(into[at..], s.Key);
            BinaryPrimitives.WriteUInt64LittleEndian(into[(at + 8)..], s.Hash);
            BinaryPrimitives.WriteInt32LittleEndian(into[(at + 16)..], s.Length);
            BinaryPrimitives.WriteInt32LittleEndian(into[(at + 20)..], blocks);
            at += SummaryHeader;
            for (int b = 0; b < blocks; b++, at += 8) BinaryPrimitives.WriteUInt64LittleEndian(into[at..], BlockHash(bytes, b));
        }
    }

    /// <summary>Primary: reads the backup's summary of count sections; false with a reason if it does not add up.</summary>
    public bool ReadSummary(ReadOnlySpan<byte> summary, int count, out string? error)
    {
        _peerCount = 0;
        error = null;
        int at = 0;
        for (int i = 0; i < count; i++)
        {
            if (summary.Length - at < SummaryHeader) { error = $"section {i} of {count}: the summary ends at byte {at}"; return false; }
            int length = BinaryPrimitives.ReadInt32LittleEndian(summary[(at + 16)..]);
            int blocks = BinaryPrimitives.ReadInt32LittleEndian(summary[(at + 20)..]);
            if (length <= 0 || blocks != Blocks(length) || (long)blocks * 8 > summary.Length - at - SummaryHeader)
            {
                error = $"section {i} of {count}: {length} bytes in {blocks} blocks does not fit the summary";
                return false;
            }
            if (_peerCount == _peer.Length) Array.Resize(ref _peer, _peer.Length * 2);
            _peer[_peerCount++] = new PeerSection(BinaryPrimitives.ReadUInt64LittleEndian(summary[at..]),
                BinaryPrimitives.ReadUInt64LittleEndian(summary[(at + 8)..]), length, at + SummaryHeader);
            at += SummaryHeader + blocks * 8;
        }
        if (at != summary.Length) { error = $"the summary has {summary.Length - at} bytes past its {count} sections"; return false; }
        return true;
    }

    /// <summary>
    /// Primary: appends the delta of state against the summary read last and returns the sections it carries
    /// (those the backup lacks or holds with other bytes, and every one always loaded). Sections come in this
    /// state's order, the backup's usually in the same: a cursor finds each key.
    /// </summary>
    public int WriteDelta(ReadOnlySpan<byte> state, DeviceStateSections sections, ReadOnlySpan<byte> summary, ByteBuffer into)
    {
        int cursor = 0, sent = 0;
        for (int i = 0; i < sections.Count; i++)
        {
            ref readonly var s = ref sections[i];
            int peer = -1;
            for (int n = 0; n < _peerCount; n++)
            {
                int j = (cursor + n) % _peerCount;
                if (_peer[j].Key != s.Key) continue;
                peer = j;
                cursor = j + 1;
                break;
            }
            if (peer >= 0 && _peer[peer].Hash == s.Hash && !s.AlwaysSend) continue;
            sent++;
            var bytes = state.Slice(s.Offset, s.Length);
            bool patch = peer >= 0 && _peer[peer].Length == s.Length;
            var head = into.Append(RecordHeader);
            head[0] = patch ? (byte)1 : (byte)0;
            BinaryPrimitives.WriteInt32LittleEndian(head[1..], Math.Max(peer, 0));
            BinaryPrimitives.WriteInt32LittleEndian(head[5..], s.Length);
            if (!patch)
            {
                bytes.CopyTo(into.Append(s.Length));
                continue;
            }
            int blocks = Blocks(s.Length), maskBytes = (blocks + 7) / 8;
            if (_mask.Length < maskBytes) _mask = new byte[Math.Max(maskBytes, 2 * _mask.Length)];
            var mask = _mask.AsSpan(0, maskBytes);
            mask.Clear();
            var theirs = summary[_peer[peer].BlockHashes..];
            for (int b = 0; b < blocks; b++)
                if (BlockHash(bytes, b) != BinaryPrimitives.ReadUInt64LittleEndian(theirs[(b * 8)..])) mask[b / 8] |= (byte)(1 << (b % 8));
            mask.CopyTo(into.Append(maskBytes));
            for (int b = 0; b < blocks; b++)
            {
                if ((mask[b / 8] & (1 << (b % 8))) == 0) continue;
                var block = bytes.Slice(b * BlockBytes, Math.Min(BlockBytes, s.Length - b * BlockBytes));
                block.CopyTo(into.Append(block.Length));
            }
        }
        return sent;
    }

    /// <summary>
    /// Backup: the vmstate stream to load: own's header, each section of delta rebuilt (whole, or own section's
    /// bytes with the blocks sent), the EOF byte. Nothing from the primary is trusted: false with a reason when an
    /// index, a length or a mask does not fit.
    /// </summary>
    public static bool Rebuild(ReadOnlySpan<byte> own, DeviceStateSections ownSections, ReadOnlySpan<byte> delta, int records,
                               ByteBuffer into, out string? error)
    {
        error = null;
        into.Clear();
        own[..DeviceStateSections.HeaderBytes].CopyTo(into.Append(DeviceStateSections.HeaderBytes));
        int at = 0;
        for (int r = 0; r < records; r++)
        {
            if (delta.Length - at < RecordHeader) { error = $"record {r} of {records}: the delta ends at byte {at}"; return false; }
            byte kind = delta[at];
            int index = BinaryPrimitives.ReadInt32LittleEndian(delta[(at + 1)..]);
            int length = BinaryPrimitives.ReadInt32LittleEndian(delta[(at + 5)..]);
            at += RecordHeader;
            if (length <= 0) { error = $"record {r}: a section of {length} bytes"; return false; }
            if (kind == 0)
            {
                if (delta.Length - at < length) { error = $"record {r}: {length} bytes, {delta.Length - at} left"; return false; }
                delta.Slice(at, length).CopyTo(into.Append(length));
                at += length;
                continue;
            }
            if (kind != 1 || (uint)index >= (uint)ownSections.Count || ownSections[index].Length != length)
            {
                error = $"record {r}: kind {kind} for section {index} of {length} bytes; this backup has {ownSections.Count} sections" +
                        ((uint)index < (uint)ownSections.Count ? $", that one of {ownSections[index].Length} bytes" : "");
                return false;
            }
            int blocks = Blocks(length), maskBytes = (blocks + 7) / 8;
            if (delta.Length - at < maskBytes) { error = $"record {r}: the mask does not fit"; return false; }
            var mask = delta.Slice(at, maskBytes);
            at += maskBytes;
            if (blocks % 8 != 0 && (mask[^1] >> (blocks % 8)) != 0) { error = $"record {r}: the mask names blocks past the {blocks} blocks of the section"; return false; }
            var section = into.Append(length);
            own.Slice(ownSections[index].Offset, length).CopyTo(section);
            for (int b = 0; b < blocks; b++)
            {
                if ((mask[b / 8] & (1 << (b % 8))) == 0) continue;
                int n = Math.Min(BlockBytes, length - b * BlockBytes);
                if (delta.Length - at < n) { error = $"record {r}: block {b} does not fit"; return false; }
                delta.Slice(at, n).CopyTo(section[(b * BlockBytes)..]);
                at += n;
            }
        }
        if (at != delta.Length) { error = $"the delta has {delta.Length - at} bytes past its {records} sections"; return false; }
        into.Append(1)[0] = DeviceStateSections.Eof;
        return true;
    }
}
