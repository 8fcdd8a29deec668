using Plover.Transport;

namespace Plover.Metrics;

/// <summary>Which connection a frame travelled on.</summary>
public enum WireChannel : byte { Consensus, SyncLink, Observer }

/// <summary>What a frame carried.</summary>
public enum WireKind : byte
{
    Handshake, Entries, Heartbeats, Acks, Elections, Recovery, Status, Probes,
    SyncControl, Bitmaps, Hashes, Pages, DeviceState,
    /// <summary>The replicated drives' part of a sync (SyncDisk frames: disk bitmaps, block hashes, blocks).</summary>
    Disk,
}

/// <summary>One row of <see cref="WireTraffic.Snapshot"/>.</summary>
public readonly record struct WireCount(WireChannel Channel, WireKind Kind, long SentBytes, long SentFrames, long ReceivedBytes, long ReceivedFrames);

/// <summary>
/// What one node sent and received, by channel and kind of message, counted where frames are encoded and decoded:
/// whole frames (length, type, sequence number, body and MAC), everything the socket carries above TCP. Lock-free;
/// any thread.
/// </summary>
public sealed class WireTraffic
{
    private const int Kinds = (int)WireKind.Disk + 1;
    private const int Cells = ((int)WireChannel.Observer + 1) * Kinds;
    private readonly long[] _sentBytes = new long[Cells], _sentFrames = new long[Cells];
    private readonly long[] _receivedBytes = new long[Cells], _receivedFrames = new long[Cells];

    public void Sent(WireChannel channel, WireKind kind, int bytes)
    {
        int i = (int)channel * Kinds + (int)kind;
        Interlocked.Add(ref _sentBytes[i], bytes);
        Interlocked.Increment(ref _sentFrames[i]);
    }

    public void Received(WireChannel channel, WireKind kind, int bytes)
    {
        int i = (int)channel * Kinds + (int)kind;
        Interlocked.Add(ref _receivedBytes[i], bytes);
        Interlocked.Increment(ref _receivedFrames[i]);
    }

    public long SentBytes(WireChannel channel, WireKind kind) => Volatile.Read(ref _sentBytes[(int)channel * Kinds + (int)kind]);
    public long ReceivedBytes(WireChannel channel, WireKind kind) => Volatile.Read(ref _receivedBytes[(int)channel * Kinds + (int)kind]);

    /// <summary>Bytes sent and received over every channel and kind.</summary>
    public (long Sent, long Received) Total
    {
        get
        {
            long s = 0, r = 0;
            for (int i = 0; i < Cells; i++) { s += Volatile.Read(ref _sentBytes[i]); r += Volatile.Read(ref _receivedBytes[i]); }
            return (s, r);
        }
    }

    /// <summary>The rows for a status report (protobuf NodeStatus.traffic).</summary>
    public IEnumerable<Wire.WireCount> ToWire() => Snapshot().Select(r => new Wire.WireCount
    {
        Channel = r.Channel.ToString().ToLowerInvariant(), Kind = r.Kind.ToString().ToLowerInvariant(),
        SentBytes = r.SentBytes, SentFrames = r.SentFrames, ReceivedBytes = r.ReceivedBytes, ReceivedFrames = r.ReceivedFrames,
    });

    /// <summary>Writes bytesSent, bytesReceived and a "traffic" array of rows (the admin socket, plover status --json).</summary>
    public static void WriteJson(System.Text.Json.Utf8JsonWriter j, IReadOnlyCollection<Wire.WireCount> rows)
    {
        j.WriteNumber("bytesSent", rows.Sum(r => r.SentBytes));
        j.WriteNumber("bytesReceived", rows.Sum(r => r.ReceivedBytes));
        j.WriteStartArray("traffic");
        foreach (var r in rows)
        {
            j.WriteStartObject();
            j.WriteString("channel", r.Channel);
            j.WriteString("kind", r.Kind);
            j.WriteNumber("sentBytes", r.SentBytes);
            j.WriteNumber("sentFrames", r.SentFrames);
            j.WriteNumber("receivedBytes", r.ReceivedBytes);
            j.WriteNumber("receivedFrames", r.ReceivedFrames);
            j.WriteEndObject();
        }
        j.WriteEndArray();
    }

    /// <summary>Every channel and kind that carried anything.</summary>
    public List<WireCount> Snapshot()
    {
        var rows = new List<WireCount>();
        for (int i = 0; i < Cells; i++)
        {
            var row = new WireCount((WireChannel)(i / Kinds), (WireKind)(i % Kinds), Volatile.Read(ref _sentBytes[i]),
                Volatile.Read(ref _sentFrames[i]), Volatile.Read(ref _receivedBytes[i]), Volatile.Read(ref _receivedFrames[i]));
            if (row.SentFrames + row.ReceivedFrames > 0) rows.Add(row);
        }
        return rows;
    }

    /// <summary>
    /// The kind of a frame from its type and body. Consensus frames are told apart by the message kind, the first
    /// field of their protobuf header (0x08, then the kind as a one-byte varint); an Accept with a payload tail
    /// carries log entries, one without is a heartbeat or a commit notice.
    /// </summary>
    public static WireKind Classify(FrameType type, ReadOnlySpan<byte> body) => type switch
    {
        FrameType.Hello or FrameType.AuthProof => WireKind.Handshake,
        FrameType.Ping or FrameType.Pong => WireKind.Probes,
        FrameType.NodeStatusRequest or FrameType.NodeStatus => WireKind.Status,
        FrameType.SyncBitmap => WireKind.Bitmaps,
        FrameType.SyncHashes => WireKind.Hashes,
        FrameType.SyncPages => WireKind.Pages,
        FrameType.SyncDeviceState or FrameType.SyncDeviceHashes => WireKind.DeviceState,
        FrameType.SyncDisk => WireKind.Disk,
        FrameType.SyncAck or FrameType.SyncAbort or FrameType.SyncBegin => WireKind.SyncControl,
        FrameType.Consensus => ClassifyConsensus(body),
        _ => WireKind.SyncControl,
    };

    private static WireKind ClassifyConsensus(ReadOnlySpan<byte> body)
    {
        if (!FrameBody.TrySplit(body, out var header, out var tail, out _) || header.Length < 2 || header[0] != 0x08)
            return WireKind.Heartbeats;
        return header[1] switch
        {
            6 => tail.Length > 0 ? WireKind.Entries : WireKind.Heartbeats,   // Accept
            7 => WireKind.Acks,                                                // Accepted
            8 => WireKind.Heartbeats,                                          // SnapshotRequired
            9 or 10 => WireKind.Recovery,
            _ => WireKind.Elections,                                           // pre-vote, prepare, promise, nack
        };
    }
}
