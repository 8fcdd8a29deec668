using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Google.Protobuf;
using Plover.Sync;
using Plover.Transport;
using Plover.Wire;

namespace Plover.Fuzz.Targets;

/// <summary>
/// The backup's side of a sync, for real: a <see cref="SyncEngine"/> in the backup role over synthetic guest RAM
/// (two blocks, 70 and 3 pages, so bitmaps have padding bits and a second block), joined to this harness by an
/// authenticated loopback <see cref="SyncConnection"/>. The harness plays the primary: it sends the input's frames,
/// signed and numbered so they pass the MAC and reach the engine's message handling, then closes its sending
/// side and reads whatever the backup sends until the sync is over.
/// Input: byte 0 = flags (bit 0: the sync is a full sync; bit 1: the checkpoint-mode engine; bit 2: the backup's
/// guest dirtied pages 0, 69 and 130 before the sync), then frames, each [u8 frame type][u32 LE body length][body]
/// (body = u32 header length, protobuf header, tail; the length is cut to what the input holds; bodies under 4
/// bytes are skipped). The sync is epoch 7 at log index 700.
/// Documented outcome: the sync completes or aborts, and an abort comes from SyncProtocolException,
/// SyncConnectionException or InvalidProtocolBufferException (the engine catches it, discards staging, resumes the
/// VM and closes the link). Any other exception thrown during the sync (seen first-chance, since the engine catches
/// everything), a sync still running 10 s later, a VM left stopped or a backup marked invalid is a finding; a
/// write out of bounds in the unsafe paths crashes the process. Property of a completed sync: every device state
/// frame the backup took declared the total it loaded (sync.proto: the chunks of one transfer).
/// </summary>
public sealed class SyncBackupTarget : IFuzzTarget, IDisposable
{
    public const ulong Epoch = 7;
    public const long LogIndex = 700;
    private static readonly (string, ulong)[] Blocks = [("pc.ram", 70 * 4096), ("vga.vram", 3 * 4096)];
    private static readonly Type[] Documented =
    [
        typeof(SyncProtocolException), typeof(SyncConnectionException), typeof(InvalidProtocolBufferException),
        // the link's own plumbing when the harness closes its side (turned into SyncConnectionException)
        typeof(SocketException), typeof(ObjectDisposedException),
    ];

    private Backup? _replicate, _checkpoint;
    private Socket? _listener;
    private readonly ConcurrentQueue<(int Thread, Exception Error)> _thrown = new();
    private volatile bool _recording;

    public string Name => "sync";
    public string Description => "sync frames from the primary -> the backup's SyncEngine (bitmap, hashes, pages, sub-blocks, device state)";

    public string LastOutcome { get; private set; } = "";

    public void Run(ReadOnlySpan<byte> input)
    {
        LastOutcome = "refused: empty input";
        if (input.IsEmpty) return;
        byte flags = input[0];
        var backup = (flags & 2) != 0 ? _checkpoint ??= new Backup(checkpoint: true) : _replicate ??= new Backup(checkpoint: false);
        if (_listener is null)
        {
            _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen(4);
            AppDomain.CurrentDomain.FirstChanceException += (_, e) =>
            {
                if (_recording) _thrown.Enqueue((Environment.CurrentManagedThreadId, e.Exception));
            };
        }
        if ((flags & 4) != 0)
        {
            backup.Memory.Touch(0, 0);
            backup.Memory.Touch(0, 69);
            backup.Memory.Touch(1, 2);
        }

        var accepted = Task.Run(() => SyncConnection.Accept(_listener, FuzzIdentity.Of(2), 1, TimeSpan.FromSeconds(5)));
        using var primary = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        primary.Connect(_listener.LocalEndPoint!);
        using var recv = new ByteBuffer(64 << 10);
        var reader = new FrameReader();
        var writer = new FrameWriter();
        var keys = Handshake.Dial(primary, recv, reader, writer, FuzzIdentity.Of(1), ChannelPurpose.Sync, 2, TimeSpan.FromSeconds(5));
        using var sendAuth = new FrameAuthenticator(keys.SendKey, keys.Encrypt);
        writer.Authenticate(sendAuth);
        backup.Engine.Connection = accepted.Result;

        _thrown.Clear();
        _recording = true;
        Task<SyncStats> sync;
        var frames = Frames(input[1..].ToArray()).ToList();
        try
        {
            sync = backup.Engine.RunAsync(new SyncRequest(Epoch, LogIndex, FullSync: (flags & 1) != 0));
            using (var output = new ByteBuffer(input.Length + 1024))
            {
                foreach (var (type, body) in frames) writer.Write(output, type, body);
                SendAll(primary, output.Data);
            }
            primary.Shutdown(SocketShutdown.Send);
            Drain(primary, sync);
            if (!sync.Wait(TimeSpan.FromSeconds(10))) throw new FuzzFinding("the backup's sync still runs 10 s after the primary stopped sending");
        }
        finally
        {
            _recording = false;
        }
        backup.Engine.Connection?.Dispose();
        backup.Engine.Connection = null;

        var stats = sync.Result;
        LastOutcome = stats.Outcome == SyncOutcome.Completed ? $"accepted: {stats.DivergentPages} pages applied" : "refused: " + stats.Error;
        // Only the engine's thread counts (other threads of the process, other tests, throw their own).
        foreach (var (thread, e) in _thrown)
            if (thread == backup.EngineThread && !Documented.Contains(e.GetType()))
                throw new FuzzFinding($"the sync ({stats.Outcome}: {stats.Error}) threw {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
        if (!backup.Vm.Running) throw new FuzzFinding($"the backup's VM is left stopped after the sync ({stats.Outcome}: {stats.Error})");
        if (backup.Engine.StateInvalid) throw new FuzzFinding($"the backup is marked invalid after the sync ({stats.Outcome}: {stats.Error})");
        if (stats.Outcome == SyncOutcome.Completed) CheckDeviceState(frames, backup.Vm.DeviceState);
    }

    /// <summary>The device state frames a completed sync took (the run of them from the first one, up to the one that
    /// completed the transfer) must all declare the total the backup loaded.</summary>
    private static void CheckDeviceState(List<(FrameType Type, byte[] Body)> frames, byte[] loaded)
    {
        ulong received = 0;
        foreach (var (type, body) in frames.SkipWhile(f => f.Type != FrameType.SyncDeviceState))
        {
            if (type != FrameType.SyncDeviceState || !FrameBody.TrySplit(body, out var header, out var tail, out _)) return;
            ulong total;
            try { total = SyncDeviceState.Parser.ParseFrom(header).TotalLength; }
            catch (InvalidProtocolBufferException) { return; }
            if (total != (ulong)loaded.Length)
                throw new FuzzFinding($"the backup loaded {loaded.Length} bytes of device state, but a device state frame it took declared a total of {total}");
            received += (ulong)tail.Length;
            if (received >= (ulong)loaded.Length) return;
        }
    }

    /// <summary>The frames of the input, as described above.</summary>
    public static IEnumerable<(FrameType Type, byte[] Body)> Frames(byte[] data)
    {
        int at = 0;
        while (data.Length - at >= 5)
        {
            var type = (FrameType)data[at];
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(at + 1));
            at += 5;
            int n = (int)Math.Min(length, (uint)(data.Length - at));
            if (n >= FrameFormat.MinBodySize) yield return (type, data.AsSpan(at, n).ToArray());
            at += n;
        }
    }

    private static void SendAll(Socket socket, ReadOnlySpan<byte> data)
    {
        try
        {
            while (!data.IsEmpty) data = data[socket.Send(data)..];
        }
        catch (SocketException)
        {
            // the backup closed the link early (a bad frame): the rest is not needed
        }
    }

    /// <summary>Reads what the backup sends (its bitmap, hashes, ack or abort) until it closes or its sync is over.</summary>
    private static void Drain(Socket socket, Task sync)
    {
        var buffer = new byte[64 << 10];
        try
        {
            while (!sync.IsCompleted)
            {
                if (!socket.Poll(1_000, SelectMode.SelectRead)) continue;
                if (socket.Receive(buffer) == 0) return;
            }
        }
        catch (SocketException)
        {
            // reset by the backup
        }
    }

    public void Dispose()
    {
        _replicate?.Dispose();
        _checkpoint?.Dispose();
        _listener?.Dispose();
    }

    /// <summary>A backup replica: its guest RAM, VM, main thread and sync engine.</summary>
    private sealed class Backup : IDisposable
    {
        public Backup(bool checkpoint)
        {
            Memory = new SyntheticGuestMemory(Blocks);
            Memory.FillRandom(1);
            Main = new DedicatedMainThread("fuzz-main");
            Vm = new SyntheticVm(Memory, Main);
            // The step hook and the log run on the engine thread: every sync calls one of them (a step, or the abort's log).
            Engine = new SyncEngine(SyncRole.Backup, Memory, Vm, Main, null, new SyncOptions
            {
                Checkpoint = checkpoint, HashThreads = 1, Timeout = TimeSpan.FromSeconds(5),
                Log = _ => EngineThread = Environment.CurrentManagedThreadId,
                StepHook = (_, _) => EngineThread = Environment.CurrentManagedThreadId,
            });
        }

        public int EngineThread { get; private set; } = -1;

        public SyntheticGuestMemory Memory { get; }
        public DedicatedMainThread Main { get; }
        public SyntheticVm Vm { get; }
        public SyncEngine Engine { get; }

        public void Dispose()
        {
            Engine.Dispose();
            Main.Dispose();
            Memory.Dispose();
        }
    }

    // ---------------------------------------------------------------- seeds: valid syncs, as a primary sends them

    public IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        ulong layout;
        using (var memory = new SyntheticGuestMemory(Blocks)) layout = new SyncLayout(memory.Blocks).Hash;
        byte[] Begin(bool full = false, bool checkpoint = false) =>
            Frame(FrameType.SyncBegin, new SyncBegin { Epoch = Epoch, LogIndex = LogIndex, FullSync = full, Checkpoint = checkpoint, NextCheckpoint = checkpoint });
        byte[] Bitmap(ulong[] pages, bool sendAll = false, BitmapEncoding? encoding = null)
        {
            var words = new ulong[3];
            foreach (ulong g in pages) words[g / 64] |= 1UL << (int)(g % 64);
            var (tail, chosen) = Encode(words, encoding);
            return Frame(FrameType.SyncBitmap, new SyncBitmap
            {
                Epoch = Epoch, LogIndex = LogIndex, Encoding = chosen, TotalWords = 3, LayoutHash = layout, SetBits = (ulong)pages.Length,
                SendAll = sendAll, Protocol = SyncProtocol.Version, Kind = BitmapKind.BitmapDirty,
            }, tail);
        }
        byte[] Pages(params ulong[] pages)
        {
            var tail = new byte[pages.Length * (8 + 4096)];
            for (int i = 0; i < pages.Length; i++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(tail.AsSpan(i * 8), pages[i]);
                tail.AsSpan(pages.Length * 8 + i * 4096, 4096).Fill((byte)(pages[i] + 1));
            }
            return Frame(FrameType.SyncPages, new SyncPages { Epoch = Epoch, Count = (uint)pages.Length }, tail);
        }
        byte[] Device(ulong pagesSent, params byte[][] chunks)
        {
            ulong total = (ulong)chunks.Sum(c => c.Length), offset = 0;
            var frames = new List<byte>();
            foreach (var c in chunks)
            {
                frames.AddRange(Frame(FrameType.SyncDeviceState, new SyncDeviceState { Epoch = Epoch, TotalLength = total, Offset = offset, PagesSent = pagesSent }, c));
                offset += (ulong)c.Length;
            }
            return frames.ToArray();
        }

        yield return ("whole-pages", [0, .. Begin(), .. Bitmap([1, 2, 64, 128]), .. Pages(1, 64), .. Pages(128), .. Device(3, [9, 9, 9])]);
        yield return ("device-chunks", [0, .. Begin(), .. Bitmap([1]), .. Pages(1), .. Device(1, [1], [2, 3], [4, 5, 6])]);
        yield return ("device-chunks-small", [1, .. Begin(full: true), .. Bitmap([]), .. Device(0, [1], [2, 3], [4, 5, 6])]);
        yield return ("backup-dirt", [4, .. Begin(), .. Bitmap([1]), .. Pages(0, 130), .. Device(2, [1], [2, 3])]);
        yield return ("runs-bitmap", [0, .. Begin(), .. Bitmap(Enumerable.Range(0, 70).Select(i => (ulong)i).ToArray(), encoding: BitmapEncoding.BitmapRuns),
                                      .. Pages(3), .. Device(1, [7])]);
        yield return ("sparse-bitmap", [0, .. Begin(), .. Bitmap([5, 129], encoding: BitmapEncoding.BitmapSparse), .. Pages(5, 129), .. Device(2, new byte[0])]);
        yield return ("full-identical", [1, .. Begin(full: true), .. Bitmap([]), .. Device(0, [4, 4])]);
        yield return ("checkpoint", [2, .. Begin(checkpoint: true), .. Bitmap([2, 69, 130], sendAll: true), .. Pages(2, 69, 130), .. Device(3, [5])]);
        yield return ("abort", [0, .. Begin(), .. Bitmap([1, 2]), .. Frame(FrameType.SyncAbort, new SyncAbort { Epoch = Epoch, Reason = "primary gave up" })]);

        // Sub-blocks: union {1, 2, 64, 128}; the divergent list marks union entries 0 and 3 (pages 1 and 128), then
        // one chunk: page 1 whole as sub-blocks (all 32), page 128's second and third sub-blocks, each page with the
        // primary's root of its sub-block hashes. Page 128 put together from zeroed sub-blocks cannot have the root of
        // a page of 0x81 bytes, so the backup asks for it whole (the REPAIR round), and the input ends with it.
        var list = Frame(FrameType.SyncBitmap, new SyncBitmap
        {
            Epoch = Epoch, Encoding = BitmapEncoding.BitmapRaw, TotalWords = 1, SetBits = 2, Protocol = SyncProtocol.Version,
            Kind = BitmapKind.BitmapDivergent, SubBlockBytes = 128, ChunkPages = 2, SubBlockHashBytes = 2,
        }, BitConverter.GetBytes(0b1001UL));
        var page1 = new byte[4096];
        page1.AsSpan().Fill(2);                 // what Pages(1) sends
        var page128 = new byte[4096];
        page128.AsSpan().Fill(129);             // what Pages(128) sends
        // a page's root: CityHash64 of its 128-byte sub-blocks' CityHash64s, little-endian (SyncEngine.SubBlockRoot)
        static ulong Root(byte[] page)
        {
            var hashes = new byte[4096 / 128 * 8];
            for (int b = 0; b < 4096 / 128; b++)
                BinaryPrimitives.WriteUInt64LittleEndian(hashes.AsSpan(b * 8), Plover.Hashing.CityHash.Hash64(page.AsSpan(b * 128, 128)));
            return Plover.Hashing.CityHash.Hash64(hashes);
        }
        var subTail = new byte[4 + 8 + 4096 + 4 + 8 + 256];
        BinaryPrimitives.WriteUInt32LittleEndian(subTail, uint.MaxValue);
        BinaryPrimitives.WriteUInt64LittleEndian(subTail.AsSpan(4), Root(page1));
        page1.CopyTo(subTail, 12);
        subTail[12 + 4096] = 0b110;
        BinaryPrimitives.WriteUInt64LittleEndian(subTail.AsSpan(12 + 4096 + 4), Root(page128));
        var sub = Frame(FrameType.SyncPages, new SyncPages { Epoch = Epoch, Count = 2, SubBlockBytes = 128, FirstIndex = 0, Blocks = 34 }, subTail);
        yield return ("sub-blocks", [0, .. Begin(), .. Bitmap([1, 2, 64, 128]), .. list, .. sub, .. Device(2, [8]), .. Pages(128)]);
    }

    private static unsafe (byte[] Tail, BitmapEncoding Encoding) Encode(ulong[] words, BitmapEncoding? encoding)
    {
        fixed (ulong* w = words)
        {
            var e = encoding ?? BitmapEncoding.BitmapRaw;
            var dest = new byte[words.Length * 16 + 64];   // more than any encoding of these words needs
            int n = BitmapCodec.Encode(w, (ulong)words.Length, e, dest);
            return (dest[..n], e);
        }
    }

    /// <summary>One frame of the input format: type, body length, body (header length, header, tail).</summary>
    public static byte[] Frame(FrameType type, IMessage header, byte[]? tail = null)
    {
        tail ??= [];
        var h = header.ToByteArray();
        var frame = new byte[5 + 4 + h.Length + tail.Length];
        frame[0] = (byte)type;
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(1), (uint)(4 + h.Length + tail.Length));
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(5), (uint)h.Length);
        h.CopyTo(frame, 9);
        tail.CopyTo(frame, 9 + h.Length);
        return frame;
    }
}
