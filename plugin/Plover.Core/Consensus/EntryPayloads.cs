using System.Buffers.Binary;

namespace Plover.Consensus;

/// <summary>
/// Little-endian encodings of entry payloads. The core only builds and reads ROLE payloads; INPUT and SYNC
/// encodings live here so every node agrees on them.
/// INPUT: u32 nicId, u32 frameCount, frameCount x u32 length, then the frames back to back.
/// SYNC: u64 epoch, then optionally one byte naming the mode the replicas continue in after this cut
/// (<see cref="SyncModeChange"/>: 1 replicate, 2 checkpoint; absent: no change, the payload of older builds).
/// ROLE: i64 ballot round, i32 ballot node, i32 primary id, i32 backup id (0: none; a new
/// leader's own ROLE entry names no backup).
/// </summary>
public static class EntryPayloads
{
    public const int SyncSize = 8;
    /// <summary>A SYNC payload that names the next mode.</summary>
    public const int SyncWithModeSize = 9;
    public const int RoleSize = 20;

    public static int InputSize(ReadOnlySpan<int> frameLengths)
    {
        long size = 8 + 4L * frameLengths.Length;
        foreach (int len in frameLengths)
        {
            if (len < 0) throw new ArgumentOutOfRangeException(nameof(frameLengths), "negative frame length");
            size += len;
        }
        if (size > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(frameLengths), "input batch too large");
        return (int)size;
    }

    /// <summary>Writes the input batch header (nic id, lengths) into dest; the caller copies the frames after it.</summary>
    public static int WriteInputHeader(Span<byte> dest, int nicId, ReadOnlySpan<int> frameLengths)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(dest, (uint)nicId);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[4..], (uint)frameLengths.Length);
        for (int i = 0; i < frameLengths.Length; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(dest[(8 + 4 * i)..], (uint)frameLengths[i]);
        return 8 + 4 * frameLengths.Length;
    }

    public static byte[] EncodeInput(int nicId, IReadOnlyList<ReadOnlyMemory<byte>> frames)
    {
        Span<int> lengths = frames.Count <= 64 ? stackalloc int[frames.Count] : new int[frames.Count];
        for (int i = 0; i < frames.Count; i++) lengths[i] = frames[i].Length;
        var buf = new byte[InputSize(lengths)];
        int at = WriteInputHeader(buf, nicId, lengths);
        foreach (var f in frames) { f.Span.CopyTo(buf.AsSpan(at)); at += f.Length; }
        return buf;
    }

    /// <summary>Reads an input batch; throws FormatException on a malformed payload.</summary>
    public static int DecodeInput(ReadOnlyMemory<byte> payload, List<ReadOnlyMemory<byte>> framesOut)
    {
        var s = payload.Span;
        if (s.Length < 8) throw new FormatException("input payload shorter than its header");
        int nic = (int)BinaryPrimitives.ReadUInt32LittleEndian(s);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(s[4..]);
        if (count > (uint)(s.Length - 8) / 4) throw new FormatException("input payload frame count too large");
        long at = 8 + 4L * count;
        for (int i = 0; i < count; i++)
        {
            uint len = BinaryPrimitives.ReadUInt32LittleEndian(s[(8 + 4 * i)..]);
            if (len > s.Length - at) throw new FormatException("input payload frame overruns the payload");
            framesOut.Add(payload.Slice((int)at, (int)len));
            at += len;
        }
        if (at != s.Length) throw new FormatException("input payload has trailing bytes");
        return nic;
    }

    public static byte[] EncodeSync(ulong epoch, SyncModeChange next = SyncModeChange.None)
    {
        if (next is not (SyncModeChange.None or SyncModeChange.Replicate or SyncModeChange.Checkpoint))
            throw new ArgumentOutOfRangeException(nameof(next));
        var b = new byte[next == SyncModeChange.None ? SyncSize : SyncWithModeSize];
        BinaryPrimitives.WriteUInt64LittleEndian(b, epoch);
        if (next != SyncModeChange.None) b[SyncSize] = (byte)next;
        return b;
    }

    public static ulong DecodeSync(ReadOnlySpan<byte> payload) => DecodeSyncWithMode(payload).Epoch;

    /// <summary>The epoch and the mode the cut switches to (None: stays). Throws FormatException on a malformed
    /// payload, including a mode byte that names no mode (fail closed: an unknown mode is not guessed).</summary>
    public static (ulong Epoch, SyncModeChange Next) DecodeSyncWithMode(ReadOnlySpan<byte> payload)
    {
        if (payload.Length == SyncSize) return (BinaryPrimitives.ReadUInt64LittleEndian(payload), SyncModeChange.None);
        if (payload.Length != SyncWithModeSize) throw new FormatException("sync payload must be 8 or 9 bytes");
        var next = (SyncModeChange)payload[SyncSize];
        if (next is not (SyncModeChange.Replicate or SyncModeChange.Checkpoint))
            throw new FormatException($"sync payload names mode {payload[SyncSize]} (1 replicate, 2 checkpoint)");
        return (BinaryPrimitives.ReadUInt64LittleEndian(payload), next);
    }

    public static byte[] EncodeRole(Ballot ballot, int primaryId, int backupId = 0)
    {
        var b = new byte[RoleSize];
        BinaryPrimitives.WriteInt64LittleEndian(b, ballot.Round);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(8), ballot.NodeId);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(12), primaryId);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(16), backupId);
        return b;
    }

    public static (Ballot Ballot, int PrimaryId, int BackupId) DecodeRole(ReadOnlySpan<byte> payload)
    {
        if (payload.Length != RoleSize) throw new FormatException($"role payload must be {RoleSize} bytes");
        return (new Ballot(BinaryPrimitives.ReadInt64LittleEndian(payload), BinaryPrimitives.ReadInt32LittleEndian(payload[8..])),
                BinaryPrimitives.ReadInt32LittleEndian(payload[12..]), BinaryPrimitives.ReadInt32LittleEndian(payload[16..]));
    }
}

/// <summary>What a SYNC entry says about the replicas' mode after its cut (the sync at the entry runs in the old one).</summary>
public enum SyncModeChange : byte
{
    /// <summary>No change (an 8-byte payload).</summary>
    None = 0,
    /// <summary>Both VMs execute the log's inputs; syncs send the divergent pages.</summary>
    Replicate = 1,
    /// <summary>The backup's VM stops; inputs go straight into the primary's guest; syncs send every dirty page.</summary>
    Checkpoint = 2,
}
