using System.Globalization;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Text.Json;
using Plover.Config;
using Plover.Hashing;
using Plover.Interop;

namespace Plover.Native.Host;

/// <summary>A request the admin client got wrong; its message is the error reply.</summary>
internal sealed class AdminError(string message) : Exception(message);

/// <summary>
/// The admin commands (the control and test interface of a QEMU node). They run on the admin thread; whatever
/// touches the host runs on QEMU's main thread through the dispatcher, and only the gathering of data happens
/// there: counting, listing, hashing and formatting happen back on the admin thread.
/// Every reply is one line: {"ok":true,...} or {"ok":false,"error":"..."}. NIC is the 0-based NIC number.
/// <code>
/// help                      {commands:["usage",...]}
/// status                    {cluster,node,role,objectId,accel|null,machineReady,running,runState,qemuVersion,
///                            abiVersion:"1.0",hostAbiVersion,targetPageSize,hashKernel,hashThreads,config}
/// ramblocks                 {blocks:[{id,name,ramAddr,length,hostPageSize}]}
/// dirty-sync [list]         stop if running; dirty_sync; count; dirty_clear; resume if it was running:
///                           {harvested,wasRunning,blocks:[{id,name,dirtyPages,pages?:[i,...]}],truncated?}
///                           (pages listed with "list", at most 100000 in all; truncated says if cut)
/// dirty-mark-all            {}
/// dirty-clear               {}
/// devstate-roundtrip        stop; save; load; free; resume: {bytes}
/// devstate-save             stop if running; save the device state and keep it (one, replaced by the next save);
///                           resume if it was running: {bytes}
/// devstate-load             stop if running; load the kept device state into the live devices, as a backup's sync
///                           does; resume if it was running: {bytes}
/// nics                      {nics:[{id,filterId,netdevId,nicName,mac:"52:54:00:..",vnetHdrLen}]}
/// inject NIC HEX            {rc}                      (ok:false with rc when net_inject fails)
/// steal NIC on|off          {nic,steal}
/// stolen NIC                {nic,count,bytes,last:["hex",...]}   (last 8 stolen frames, oldest first)
/// out-mode NIC hold|pass    {rc}
/// out-cut NIC               {epoch}
/// out-release NIC EPOCH     {released}                (ok:false with the -errno when the host refuses)
/// out-discard NIC EPOCH     {discarded}
/// net-stats                 {nics:[{id,toGuestFrames,toGuestBytes,steal,stolenFrames,stolenBytes,epoch,heldPkts,
///                            heldBytes,fromGuestReports,lastCut,released,discarded}]}
/// hash-ram                  stop; hash every 4 KiB page off the main thread; resume:
///                           {wasRunning,digest,hashMs,blocks:[{id,name,pages,digest}]}; digests are 16 hex digits:
///                           block = CityHash64 of its page hashes (u64 little-endian), digest = of the block digests
/// vcpus                     {tids:[...]}
/// drives, drive-dirty, drive-read, drive-write: see AdminCommands.Drives.cs
/// </code>
/// Data that needs the machine (ramblocks, dirty-*, devstate-roundtrip, hash-ram) is refused before machine_ready.
/// </summary>
internal sealed unsafe partial class AdminCommands
{
    private const int MaxListedPages = 100_000;
    private static readonly TimeSpan MainTimeout = TimeSpan.FromSeconds(30);

    private readonly QemuNode _probe;
    private readonly Dictionary<string, (string Usage, Func<string[], string> Run)> _commands;

    public AdminCommands(QemuNode node)
    {
        _probe = node;
        _commands = new()
        {
            ["help"] = ("help", _ => Help()),
            ["status"] = ("status", _ => Status()),
            ["ramblocks"] = ("ramblocks", _ => RamBlocks()),
            ["dirty-sync"] = ("dirty-sync [list]", DirtySync),
            ["dirty-mark-all"] = ("dirty-mark-all", _ => Simple(() => Host.DirtyMarkAll())),
            ["dirty-clear"] = ("dirty-clear", _ => Simple(() => Host.DirtyClear())),
            ["devstate-roundtrip"] = ("devstate-roundtrip", _ => DevStateRoundTrip()),
            ["devstate-save"] = ("devstate-save", _ => DevStateSave()),
            ["devstate-load"] = ("devstate-load", _ => DevStateLoad()),
            ["nics"] = ("nics", _ => Nics()),
            ["inject"] = ("inject NIC HEX", Inject),
            ["steal"] = ("steal NIC on|off", Steal),
            ["stolen"] = ("stolen NIC", Stolen),
            ["out-mode"] = ("out-mode NIC hold|pass", OutMode),
            ["out-cut"] = ("out-cut NIC", OutCut),
            ["out-release"] = ("out-release NIC EPOCH", a => OutRelease(a, discard: false)),
            ["out-discard"] = ("out-discard NIC EPOCH", a => OutRelease(a, discard: true)),
            ["net-stats"] = ("net-stats", _ => NetStats()),
            ["hash-ram"] = ("hash-ram", _ => HashRam()),
            ["vm-hold"] = ("vm-hold MS", VmHold),
            ["vcpus"] = ("vcpus", _ => Vcpus()),
        };
        AddDriveCommands();
        if (node.Mode == LibraryMode.Replicate)
        {
            // Driving the VM or its NICs by hand would break replication: those commands exist only in probe mode.
            foreach (string name in ProbeOnly)
                _commands[name] = (_commands[name].Usage + " (probe mode only)", _ => throw new AdminError(
                    "not available in replicate mode: it would drive the VM behind the replica's back (set \"mode\": \"probe\")"));
            AddReplicaCommands();
            AddDivergenceCommands();
        }
    }

    private static readonly string[] ProbeOnly =
        ["dirty-sync", "dirty-mark-all", "dirty-clear", "devstate-roundtrip", "devstate-save", "devstate-load", "inject", "steal", "out-mode", "out-cut",
         "out-release", "out-discard", "hash-ram", "vm-hold", "drive-dirty", "drive-write"];

    private QemuHost Host => _probe.Host;

    /// <summary>Executes one request line and returns the reply line (without the newline). Never throws.</summary>
    public string Execute(string line)
    {
        string[] words = line.Split(' ', '\t').Where(w => w.Length > 0).ToArray();
        if (words.Length == 0)
            return AdminReply.Error("empty request (try 'help')");
        if (!_commands.TryGetValue(words[0], out var command))
            return AdminReply.Error($"unknown command '{Clip(words[0])}' (try 'help')");
        try
        {
            return command.Run(words[1..]);
        }
        catch (AdminError e)
        {
            return AdminReply.Error(e.Message.StartsWith("usage", StringComparison.Ordinal) ? e.Message
                : $"{words[0]}: {e.Message}");
        }
        catch (OperationCanceledException)
        {
            return AdminReply.Error($"{words[0]}: the library is shutting down");
        }
        catch (Exception e)
        {
            Host.Error($"admin command '{words[0]}' failed: {e}");
            return AdminReply.Error($"{words[0]}: {e.GetType().Name}: {e.Message}");
        }

        static string Clip(string s) => s.Length > 40 ? s[..40] + "..." : s;
    }

    private T OnMain<T>(Func<T> work) => _probe.Main.RunOnMain(work, MainTimeout);

    private string Simple(Action work)
    {
        OnMain(() =>
        {
            RequireMachine();
            work();
            return 0;
        });
        return new AdminReply().Finish();
    }

    private void RequireMachine()
    {
        if (!_probe.MachineReady)
            throw new AdminError("the machine is not ready (machine_ready has not been called yet)");
    }

    /// <summary>MAIN thread: stops the VM the way a sync does, if it runs; true when it did (so resume it after).</summary>
    private bool StopMachine()
    {
        RequireMachine();
        bool running = Host.VmIsRunning();
        if (running)
            Check(Host.VmStop(), "vm_stop");
        return running;
    }

    /// <summary>MAIN thread: runs work with the VM stopped and restarts it after, if it ran before.</summary>
    private T WithMachineStopped<T>(Func<bool, T> work)
    {
        bool running = StopMachine();
        try
        {
            return work(running);
        }
        finally
        {
            if (running)
                Check(Host.VmStart(), "vm_start");
        }
    }

    private string Help()
    {
        using var reply = new AdminReply();
        reply.Json.WriteStartArray("commands");
        foreach (var (usage, _) in _commands.Values)
            reply.Json.WriteStringValue(usage);
        reply.Json.WriteEndArray();
        return reply.Finish();
    }

    private string Status()
    {
        var s = OnMain(() => (running: Host.VmIsRunning(), accel: _probe.MachineReady ? Host.AccelName() : null,
            ready: _probe.MachineReady, runState: _probe.RunState));
        using var reply = new AdminReply();
        Utf8JsonWriter j = reply.Json;
        j.WriteString("cluster", _probe.Config.Cluster);
        j.WriteNumber("node", _probe.Node.Id);
        j.WriteString("role", _probe.Node.Role.Name());
        j.WriteString("mode", _probe.Mode == LibraryMode.Probe ? "probe" : "replicate");
        j.WriteString("objectId", Host.ObjectId);
        if (s.accel != null) j.WriteString("accel", s.accel); else j.WriteNull("accel");
        j.WriteBoolean("machineReady", s.ready);
        j.WriteBoolean("running", s.running);
        j.WriteString("runState", s.runState);
        j.WriteString("qemuVersion", Host.QemuVersion);
        j.WriteString("abiVersion", $"{PloverAbi.Major}.{PloverAbi.Minor}");
        j.WriteString("hostAbiVersion", $"{Host.AbiMajor}.{Host.AbiMinor}");
        j.WriteNumber("targetPageSize", Host.TargetPageSize);
        j.WriteString("hashKernel", HashKernels.Name(_probe.Hasher.Kernel));
        j.WriteNumber("hashThreads", _probe.Hasher.Threads);
        j.WriteString("config", _probe.ConfigPath);
        return reply.Finish();
    }

    private string RamBlocks()
    {
        RamBlockInfo[] blocks = OnMain(() =>
        {
            RequireMachine();
            return Host.RamBlocks();
        });
        using var reply = new AdminReply();
        reply.Json.WriteStartArray("blocks");
        foreach (RamBlockInfo b in blocks)
        {
            reply.Json.WriteStartObject();
            reply.Json.WriteNumber("id", b.Id);
            reply.Json.WriteString("name", b.Name);
            reply.Json.WriteNumber("ramAddr", b.RamAddr);
            reply.Json.WriteNumber("length", b.Length);
            reply.Json.WriteNumber("hostPageSize", b.HostPageSize);
            reply.Json.WriteEndObject();
        }
        reply.Json.WriteEndArray();
        return reply.Finish();
    }

    private ulong PageSize => Host.TargetPageSize == 0 ? 4096 : Host.TargetPageSize;

    private string DirtySync(string[] args)
    {
        bool list = args switch
        {
            [] => false,
            ["list"] => true,
            _ => throw new AdminError("usage: dirty-sync [list]"),
        };
        ulong pageSize = PageSize;
        // Main thread: stop, harvest, copy the bitmaps, clear, resume. Counting happens here, off the main thread.
        var (harvested, wasRunning, blocks, bitmaps) = OnMain(() => WithMachineStopped(running =>
        {
            long bits = Host.DirtySync();
            RamBlockInfo[] info = Host.RamBlocks();
            var copies = new ulong[info.Length][];
            for (int i = 0; i < info.Length; i++)
            {
                ulong pages = info[i].Length / pageSize;
                copies[i] = new ulong[(pages + 63) / 64];
                if (info[i].Dirty != 0)
                    new ReadOnlySpan<ulong>(info[i].DirtyBitmap, copies[i].Length).CopyTo(copies[i]);
                if (pages % 64 != 0 && copies[i].Length > 0)
                    copies[i][^1] &= (1UL << (int)(pages % 64)) - 1; // bits past the last page are not pages
            }
            Host.DirtyClear();
            return (bits, running, info, copies);
        }));

        using var reply = new AdminReply();
        Utf8JsonWriter j = reply.Json;
        j.WriteNumber("harvested", harvested);
        j.WriteBoolean("wasRunning", wasRunning);
        int listed = 0;
        bool truncated = false;
        j.WriteStartArray("blocks");
        for (int i = 0; i < blocks.Length; i++)
        {
            j.WriteStartObject();
            j.WriteNumber("id", blocks[i].Id);
            j.WriteString("name", blocks[i].Name);
            long dirty = 0;
            foreach (ulong word in bitmaps[i])
                dirty += BitOperations.PopCount(word);
            j.WriteNumber("dirtyPages", dirty);
            if (list)
            {
                j.WriteStartArray("pages");
                for (int w = 0; w < bitmaps[i].Length; w++)
                {
                    for (ulong word = bitmaps[i][w]; word != 0; word &= word - 1)
                    {
                        if (listed == MaxListedPages)
                        {
                            truncated = true;
                            break;
                        }
                        j.WriteNumberValue((long)w * 64 + BitOperations.TrailingZeroCount(word));
                        listed++;
                    }
                }
                j.WriteEndArray();
            }
            j.WriteEndObject();
        }
        j.WriteEndArray();
        if (list)
            j.WriteBoolean("truncated", truncated);
        return reply.Finish();
    }

    private byte[]? _keptDeviceState;

    /// <summary>Saves the device state and keeps it for devstate-load (e.g. into the same QEMU later, as a backup
    /// loads a primary's state into its live devices).</summary>
    private string DevStateSave()
    {
        byte[] state = OnMain(() => WithMachineStopped(_ =>
        {
            Check(Host.SaveDeviceState(out byte* buf, out nuint length), "save_device_state");
            try { return new ReadOnlySpan<byte>(buf, checked((int)length)).ToArray(); }
            finally { Host.FreeBuf(buf); }
        }));
        _keptDeviceState = state;
        using var reply = new AdminReply();
        reply.Json.WriteNumber("bytes", state.Length);
        return reply.Finish();
    }

    private string DevStateLoad()
    {
        byte[] state = _keptDeviceState ?? throw new AdminError("no device state kept (devstate-save first)");
        OnMain(() => WithMachineStopped(_ =>
        {
            fixed (byte* buf = state) Check(Host.LoadDeviceState(buf, (nuint)state.Length), "load_device_state");
            return 0;
        }));
        using var reply = new AdminReply();
        reply.Json.WriteNumber("bytes", state.Length);
        return reply.Finish();
    }

    private string DevStateRoundTrip()
    {
        long bytes = OnMain(() => WithMachineStopped(_ =>
        {
            Check(Host.SaveDeviceState(out byte* buf, out nuint length), "save_device_state");
            try
            {
                Check(Host.LoadDeviceState(buf, length), "load_device_state");
            }
            finally
            {
                Host.FreeBuf(buf);
            }
            return (long)length;
        }));
        using var reply = new AdminReply();
        reply.Json.WriteNumber("bytes", bytes);
        return reply.Finish();
    }

    private string Nics()
    {
        NicInfo[] nics = OnMain(Host.Nics);
        using var reply = new AdminReply();
        Utf8JsonWriter j = reply.Json;
        j.WriteStartArray("nics");
        foreach (NicInfo n in nics)
        {
            j.WriteStartObject();
            j.WriteNumber("id", n.Id);
            j.WriteString("filterId", n.FilterId);
            j.WriteString("netdevId", n.NetdevId);
            j.WriteString("nicName", n.NicName);
            j.WriteString("mac", n.MacText);
            j.WriteNumber("vnetHdrLen", n.VnetHdrLen);
            j.WriteEndObject();
        }
        j.WriteEndArray();
        return reply.Finish();
    }

    // Parses a NIC argument; the main-thread part checks it against the host's NICs.
    private static uint ParseNic(string text) =>
        uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint nic)
            ? nic : throw new AdminError($"NIC '{text}' is not a NIC number");

    private void RequireNic(uint nic)
    {
        int count = Host.Nics().Length;
        if (nic >= count)
            throw new AdminError($"no NIC {nic} (the host has {count})");
    }

    private string Inject(string[] args)
    {
        if (args.Length != 2)
            throw new AdminError("usage: inject NIC HEX");
        uint nic = ParseNic(args[0]);
        byte[] frame;
        try
        {
            frame = Convert.FromHexString(args[1]);
        }
        catch (FormatException)
        {
            throw new AdminError("HEX is not an even number of hex digits");
        }
        if (frame.Length == 0)
            throw new AdminError("empty frame");
        int rc = OnMain(() =>
        {
            RequireNic(nic);
            return Host.NetInject(nic, 0, frame);
        });
        return RcReply("rc", rc, "net_inject");
    }

    private string Steal(string[] args)
    {
        if (args.Length != 2 || args[1] is not ("on" or "off"))
            throw new AdminError("usage: steal NIC on|off");
        uint nic = ParseNic(args[0]);
        bool on = args[1] == "on";
        OnMain(() =>
        {
            RequireNic(nic);
            _probe.Nic(nic).Steal = on;
            return 0;
        });
        using var reply = new AdminReply();
        reply.Json.WriteNumber("nic", nic);
        reply.Json.WriteBoolean("steal", on);
        return reply.Finish();
    }

    private string Stolen(string[] args)
    {
        if (args.Length != 1)
            throw new AdminError("usage: stolen NIC");
        uint nic = ParseNic(args[0]);
        var (count, bytes, last) = OnMain(() =>
        {
            RequireNic(nic);
            NicCounters c = _probe.Nic(nic);
            return (c.StolenFrames, c.StolenBytes, c.LastStolen());
        });
        using var reply = new AdminReply();
        reply.Json.WriteNumber("nic", nic);
        reply.Json.WriteNumber("count", count);
        reply.Json.WriteNumber("bytes", bytes);
        reply.Json.WriteStartArray("last");
        foreach (byte[] frame in last)
            reply.Json.WriteStringValue(Convert.ToHexStringLower(frame));
        reply.Json.WriteEndArray();
        return reply.Finish();
    }

    private string OutMode(string[] args)
    {
        if (args.Length != 2 || args[1] is not ("hold" or "pass"))
            throw new AdminError("usage: out-mode NIC hold|pass");
        uint nic = ParseNic(args[0]);
        int mode = args[1] == "hold" ? PloverAbi.OutHold : PloverAbi.OutPass;
        int rc = OnMain(() =>
        {
            RequireNic(nic);
            return Host.NetOutMode(nic, mode);
        });
        return RcReply("rc", rc, "net_out_mode");
    }

    private string OutCut(string[] args)
    {
        if (args.Length != 1)
            throw new AdminError("usage: out-cut NIC");
        uint nic = ParseNic(args[0]);
        ulong epoch = OnMain(() =>
        {
            RequireNic(nic);
            ulong e = Host.NetOutCut(nic);
            _probe.Nic(nic).LastCutEpoch = e;
            return e;
        });
        using var reply = new AdminReply();
        reply.Json.WriteNumber("epoch", epoch);
        return reply.Finish();
    }

    private string OutRelease(string[] args, bool discard)
    {
        string name = discard ? "out-discard" : "out-release";
        if (args.Length != 2)
            throw new AdminError($"usage: {name} NIC EPOCH");
        uint nic = ParseNic(args[0]);
        if (!ulong.TryParse(args[1], NumberStyles.None, CultureInfo.InvariantCulture, out ulong epoch))
            throw new AdminError($"EPOCH '{args[1]}' is not a number");
        long n = OnMain(() =>
        {
            RequireNic(nic);
            long frames = discard ? Host.NetOutDiscard(nic, epoch) : Host.NetOutRelease(nic, epoch);
            if (frames > 0)
            {
                NicCounters c = _probe.Nic(nic);
                if (discard) c.Discarded += frames; else c.Released += frames;
            }
            return frames;
        });
        return RcReply(discard ? "discarded" : "released", n, discard ? "net_out_discard" : "net_out_release");
    }

    private string NetStats()
    {
        var stats = OnMain(() =>
        {
            int hostNics = Host.Nics().Length;
            if (hostNics > 0)
                _probe.Nic((uint)hostNics - 1); // list every host NIC, seen or not
            return _probe.NicCounters.Select(c => (c.Id, c.ToGuestFrames, c.ToGuestBytes, c.Steal, c.StolenFrames,
                c.StolenBytes, c.HeldEpoch, c.HeldPkts, c.HeldBytes, c.FromGuestReports, c.LastCutEpoch, c.Released,
                c.Discarded)).ToArray();
        });
        using var reply = new AdminReply();
        Utf8JsonWriter j = reply.Json;
        j.WriteStartArray("nics");
        foreach (var c in stats)
        {
            j.WriteStartObject();
            j.WriteNumber("id", c.Id);
            j.WriteNumber("toGuestFrames", c.ToGuestFrames);
            j.WriteNumber("toGuestBytes", c.ToGuestBytes);
            j.WriteBoolean("steal", c.Steal);
            j.WriteNumber("stolenFrames", c.StolenFrames);
            j.WriteNumber("stolenBytes", c.StolenBytes);
            j.WriteNumber("epoch", c.HeldEpoch);
            j.WriteNumber("heldPkts", c.HeldPkts);
            j.WriteNumber("heldBytes", c.HeldBytes);
            j.WriteNumber("fromGuestReports", c.FromGuestReports);
            j.WriteNumber("lastCut", c.LastCutEpoch);
            j.WriteNumber("released", c.Released);
            j.WriteNumber("discarded", c.Discarded);
            j.WriteEndObject();
        }
        j.WriteEndArray();
        return reply.Finish();
    }

    /// <summary>Stops the VM the way a sync does (the library's vm_stop), waits MS on this thread, then starts it:
    /// how long a library stop may last before QEMU reports it to its monitor (patch 0010) is tested with it.</summary>
    private string VmHold(string[] args)
    {
        if (args.Length != 1 || !int.TryParse(args[0], out int ms) || ms < 0 || ms > 60_000)
            throw new AdminError("usage: vm-hold MS (0..60000)");
        bool wasRunning = OnMain(StopMachine);
        Thread.Sleep(ms);
        if (wasRunning) OnMain(() => Check(Host.VmStart(), "vm_start"));
        using var reply = new AdminReply();
        reply.Json.WriteBoolean("held", wasRunning);
        reply.Json.WriteNumber("ms", ms);
        return reply.Finish();
    }

    /// <summary>Stops the VM, hashes every page of every block on the hash workers (off the main thread, which
    /// keeps serving QEMU), resumes. Digest = CityHash64 of the block's page hashes (little-endian u64 each);
    /// the top-level digest is CityHash64 of the block digests.</summary>
    private string HashRam()
    {
        var (wasRunning, blocks) = OnMain(() =>
        {
            bool running = StopMachine();
            try
            {
                return (running, Host.RamBlocks());
            }
            catch
            {
                if (running)
                    Host.VmStart();
                throw;
            }
        });
        var digests = new ulong[blocks.Length];
        var pageCounts = new ulong[blocks.Length];
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            for (int i = 0; i < blocks.Length; i++)
            {
                if (_probe.Stopped)
                    throw new OperationCanceledException();
                ulong pages = blocks[i].Length / PageHasher.PageSize;
                pageCounts[i] = pages;
                ulong* hashes = (ulong*)NativeMemory.Alloc((nuint)Math.Max(pages, 1), sizeof(ulong));
                try
                {
                    _probe.Hasher.HashPages(blocks[i].HostPtr, pages, null, hashes);
                    digests[i] = CityHash.Hash64((byte*)hashes, (nuint)(pages * sizeof(ulong)));
                }
                finally
                {
                    NativeMemory.Free(hashes);
                }
            }
        }
        finally
        {
            if (wasRunning && !_probe.Stopped)
                OnMain(() => Check(Host.VmStart(), "vm_start"));
        }
        double ms = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;

        using var reply = new AdminReply();
        Utf8JsonWriter j = reply.Json;
        j.WriteBoolean("wasRunning", wasRunning);
        fixed (ulong* d = digests)
            j.WriteString("digest", Hex(CityHash.Hash64((byte*)d, (nuint)(digests.Length * sizeof(ulong)))));
        j.WriteNumber("hashMs", Math.Round(ms, 3));
        j.WriteStartArray("blocks");
        for (int i = 0; i < blocks.Length; i++)
        {
            j.WriteStartObject();
            j.WriteNumber("id", blocks[i].Id);
            j.WriteString("name", blocks[i].Name);
            j.WriteNumber("pages", pageCounts[i]);
            j.WriteString("digest", Hex(digests[i]));
            j.WriteEndObject();
        }
        j.WriteEndArray();
        return reply.Finish();

        static string Hex(ulong v) => v.ToString("x16", CultureInfo.InvariantCulture);
    }

    private string Vcpus()
    {
        int[] tids = OnMain(Host.VcpuThreadIds);
        using var reply = new AdminReply();
        reply.Json.WriteStartArray("tids");
        foreach (int tid in tids)
            reply.Json.WriteNumberValue(tid);
        reply.Json.WriteEndArray();
        return reply.Finish();
    }

    private static string RcReply(string field, long rc, string call)
    {
        using var reply = new AdminReply(ok: rc >= 0);
        if (rc < 0)
            reply.Json.WriteString("error", $"{call} returned {rc}");
        reply.Json.WriteNumber(field, rc);
        return reply.Finish();
    }

    private static int Check(int rc, string call) =>
        rc >= 0 ? rc : throw new AdminError($"{call} returned {rc}");
}
