// syncvm benchmark: two replicas in one process (synthetic guest memory, fake VMs with their own main threads),
// joined by an authenticated loopback TCP connection. For each grid point (guest memory, dirty share, divergent
// share) the same engine runs in Plover mode (hash, send divergent pages) and Remus mode (send every dirty page),
// and the primary's pause and the bytes on the wire are reported side by side.
// Note: both replicas share this machine's cores, so the two sides' hashing competes for the same CPUs.
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using Plover.Hashing;
using Plover.Sync;
using Plover.Transport;

var opts = BenchOptions.Parse(args);
var rows = new List<Row>();
var key = RandomNumberGenerator.GetBytes(32);
Console.WriteLine($"syncvm bench: {Environment.ProcessorCount} cores, sizes {string.Join(",", opts.SizesGiB)} GiB, dirty {string.Join(",", opts.DirtyPct)}%, " +
                  $"divergent {string.Join(",", opts.DivergentPct)}%, {opts.Reps} reps (median), device state {opts.DeviceStateBytes / 1024} KiB");
var total = Stopwatch.StartNew();

foreach (double gib in opts.SizesGiB)
{
    using var bench = new Replicas((ulong)(gib * (1UL << 30)), key, opts.DeviceStateBytes, opts.PagesPerFrame);
    foreach (double dirty in opts.DirtyPct)
    foreach (double divergent in opts.DivergentPct)
    {
        var pages = (ulong)(bench.Pages * dirty / 100);
        foreach (bool remus in new[] { false, true })
            rows.Add(bench.Measure($"{gib:0.#} GiB", pages, divergent / 100, remus, opts.Reps));
        PrintRows(rows[^2..]);
    }
    if (gib == opts.SizesGiB[0])
    {
        // The target: 10,000 dirty pages, 25% divergent.
        Console.WriteLine();
        Console.WriteLine("target point: 10,000 dirty pages, 25% divergent");
        var target = bench.Measure($"{gib:0.#} GiB", 10_000, 0.25, false, opts.TargetReps, "target");
        var targetRemus = bench.Measure($"{gib:0.#} GiB", 10_000, 0.25, true, opts.TargetReps, "target");
        rows.Add(target);
        rows.Add(targetRemus);
        PrintRows([target, targetRemus]);
        double alone = bench.HashAloneMs(10_000);
        Console.WriteLine($"  hashing 10,000 pages on one side with nothing else running: {alone:F2} ms (in the sync both sides hash at once on the same cores)");
        rows.Add(new Row { Kind = "hash-alone", Memory = $"{gib:0.#} GiB", DirtyPages = 10_000, PauseMs = alone });
        Console.WriteLine();
    }
}

Console.WriteLine();
Console.WriteLine("All rows:");
PrintRows(rows.Where(r => r.Kind == "grid").ToList(), header: true);
Console.WriteLine($"bench time {total.Elapsed.TotalSeconds:F0} s");

Directory.CreateDirectory(Path.GetDirectoryName(opts.Json)!);
using (var stream = File.Create(opts.Json))
using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
{
    json.WriteStartObject();
    json.WriteString("bench", "sync");
    json.WriteString("date", DateTime.UtcNow.ToString("o"));
    json.WriteNumber("cores", Environment.ProcessorCount);
    json.WriteNumber("reps", opts.Reps);
    json.WriteNumber("device_state_bytes", opts.DeviceStateBytes);
    json.WriteNumber("pages_per_frame", opts.PagesPerFrame);
    json.WriteString("note", "both replicas in one process on the same cores; pause = primary's stop request to resume done; ratio = wire bytes without device state / (divergent*4096 + both bitmaps + hashes)");
    json.WriteStartArray("rows");
    foreach (var r in rows) r.Write(json);
    json.WriteEndArray();
    json.WriteEndObject();
}
Console.WriteLine($"wrote {opts.Json}");

static void PrintRows(IReadOnlyList<Row> rows, bool header = true)
{
    if (header)
        Console.WriteLine($"{"memory",-7} {"dirty",8} {"div%",5} {"mode",-6} {"union",8} {"sent",8} {"wire MiB",9} {"ratio",6} {"bmp KiB",7} {"raw KiB",7} {"pause ms",9}  " +
                          $"{"stop",6} {"bitmap",6} {"hash",7} {"cmp",5} {"xfer",7} {"dev",5} {"apply",7} {"resume",6}");
    foreach (var r in rows)
        Console.WriteLine($"{r.Memory,-7} {r.DirtyPages,8} {r.DivergentPct,5:0} {r.Mode,-6} {r.UnionPages,8} {r.SentPages,8} {r.WireBytes / 1048576.0,9:F2} " +
                          $"{(r.Ratio > 0 ? r.Ratio.ToString("F3") : "-"),6} {r.BitmapPayload / 1024.0,7:F1} {r.BitmapRaw / 1024.0,7:F0} {r.PauseMs,9:F2}  {r.Stop,6:F2} {r.Bitmap,6:F2} {r.Hash,7:F2} {r.Compare,5:F2} " +
                          $"{r.Transfer,7:F2} {r.Device,5:F2} {r.Apply,7:F2} {r.Resume,6:F2}");
}

sealed class BenchOptions
{
    public double[] SizesGiB = [1, 4];
    public double[] DirtyPct = [1, 5, 20];
    public double[] DivergentPct = [0, 25, 50];
    public int Reps = 3;
    public int TargetReps = 15;
    public int DeviceStateBytes = 256 * 1024;
    public int PagesPerFrame = 256;
    public string Json = "artifacts/bench/sync.json";

    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions();
        static double[] List(string s) => s.Split(',').Select(double.Parse).ToArray();
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--sizes": o.SizesGiB = List(Next()); break;
                case "--dirty": o.DirtyPct = List(Next()); break;
                case "--divergent": o.DivergentPct = List(Next()); break;
                case "--reps": o.Reps = int.Parse(Next()); break;
                case "--target-reps": o.TargetReps = int.Parse(Next()); break;
                case "--device-state": o.DeviceStateBytes = int.Parse(Next()); break;
                case "--pages-per-frame": o.PagesPerFrame = int.Parse(Next()); break;
                case "--json": o.Json = Next(); break;
                case "--quick": o.SizesGiB = [1]; o.DirtyPct = [1, 20]; o.DivergentPct = [0, 50]; o.Reps = 1; o.TargetReps = 5; break;
                default: throw new ArgumentException($"unknown argument {args[i]}");
            }
        }
        return o;
    }
}

sealed class Row
{
    public string Kind = "grid", Memory = "", Mode = "", BitmapEncoding = "";
    public long BitmapPayload, BitmapRaw;
    public ulong DirtyPages, UnionPages, SentPages;
    public double DivergentPct;
    public long WireBytes, BitmapBytes, HashBytes, PageBytes, DeviceBytes, ControlBytes;
    public double Ratio, PauseMs, PauseP10, PauseP90, Stop, Bitmap, Hash, Compare, Transfer, Device, Apply, Resume;

    public void Write(Utf8JsonWriter j)
    {
        j.WriteStartObject();
        j.WriteString("kind", Kind); j.WriteString("memory", Memory); j.WriteString("mode", Mode);
        j.WriteNumber("dirty_pages", DirtyPages); j.WriteNumber("divergent_pct", DivergentPct);
        j.WriteNumber("union_pages", UnionPages); j.WriteNumber("sent_pages", SentPages);
        j.WriteNumber("wire_bytes", WireBytes); j.WriteNumber("bitmap_bytes", BitmapBytes); j.WriteNumber("hash_bytes", HashBytes);
        j.WriteNumber("page_bytes", PageBytes); j.WriteNumber("device_state_bytes", DeviceBytes); j.WriteNumber("control_bytes", ControlBytes);
        j.WriteNumber("ratio_to_essential", Math.Round(Ratio, 4));
        j.WriteString("bitmap_encoding", BitmapEncoding); j.WriteNumber("bitmap_payload_bytes", BitmapPayload); j.WriteNumber("bitmap_raw_bytes", BitmapRaw);
        j.WriteNumber("pause_ms_median", Math.Round(PauseMs, 3)); j.WriteNumber("pause_ms_p10", Math.Round(PauseP10, 3)); j.WriteNumber("pause_ms_p90", Math.Round(PauseP90, 3));
        j.WriteStartObject("pause_ms_breakdown");
        j.WriteNumber("stop", Math.Round(Stop, 3)); j.WriteNumber("bitmap", Math.Round(Bitmap, 3)); j.WriteNumber("hash", Math.Round(Hash, 3));
        j.WriteNumber("compare", Math.Round(Compare, 3)); j.WriteNumber("transfer", Math.Round(Transfer, 3)); j.WriteNumber("device_state", Math.Round(Device, 3));
        j.WriteNumber("apply", Math.Round(Apply, 3)); j.WriteNumber("resume", Math.Round(Resume, 3));
        j.WriteEndObject();
        j.WriteEndObject();
    }
}

/// <summary>A primary and a backup with one memory each and two engine pairs (Plover, Remus) over loopback.</summary>
sealed unsafe class Replicas : IDisposable
{
    private readonly SyntheticGuestMemory _pm, _bm;
    private readonly DedicatedMainThread _pMain = new("primary-main"), _bMain = new("backup-main");
    private readonly SyntheticVm _pVm, _bVm;
    private readonly SyncEngine[] _primary = new SyncEngine[2], _backup = new SyncEngine[2];
    private readonly Random _rng = new(12345);
    private ulong _epoch;

    public Replicas(ulong bytes, byte[] key, int deviceStateBytes, int pagesPerFrame)
    {
        _pm = new SyntheticGuestMemory(("pc.ram", bytes));
        _bm = new SyntheticGuestMemory(("pc.ram", bytes));
        _pm.FillRandom(1);
        _bm.CopyFrom(_pm);
        _pVm = new SyntheticVm(_pm, _pMain) { DeviceState = RandomNumberGenerator.GetBytes(deviceStateBytes) };
        _bVm = new SyntheticVm(_bm, _bMain);
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(2);
        for (int mode = 0; mode < 2; mode++)
        {
            var options = new SyncOptions { Checkpoint = mode == 1, PagesPerFrame = pagesPerFrame, Timeout = TimeSpan.FromSeconds(60), Log = m => Console.Error.WriteLine(m) };
            _primary[mode] = new SyncEngine(SyncRole.Primary, _pm, _pVm, _pMain, null, options);
            _backup[mode] = new SyncEngine(SyncRole.Backup, _bm, _bVm, _bMain, null, options);
            var accept = Task.Run(() => SyncConnection.Accept(listener, new ClusterIdentity("bench", key, 2, [1, 2, 3]), TimeSpan.FromSeconds(10)));
            _primary[mode].Connection = SyncConnection.Connect((IPEndPoint)listener.LocalEndPoint!, new ClusterIdentity("bench", key, 1, [1, 2, 3]), 2, TimeSpan.FromSeconds(10));
            _backup[mode].Connection = accept.Result;
        }
        // warm up both engines (JIT, buffers) with a small sync each
        for (int mode = 0; mode < 2; mode++) { Dirty(2000, 0.25); Sync(mode); }
    }

    public ulong Pages => _pm.TotalPages;

    /// <summary>Dirties `pages` distinct random pages on both sides; `divergent` of them end up different.</summary>
    private void Dirty(ulong pages, double divergent)
    {
        ulong total = Pages;
        double p = (double)pages / total;
        ulong chosen = 0;
        for (ulong page = 0; page < total && chosen < pages; page++)
        {
            if (_rng.NextDouble() >= p && total - page > pages - chosen) continue;
            chosen++;
            ulong value = (ulong)_rng.NextInt64();
            int offset = 8 + _rng.Next(500) * 8;
            _pm.Write(0, page, offset, value);
            _bm.Write(0, page, offset, _rng.NextDouble() < divergent ? ~value : value);
        }
    }

    private SyncStats Sync(int mode)
    {
        var request = new SyncRequest(++_epoch, (long)_epoch);
        var p = _primary[mode].RunAsync(request);
        var b = _backup[mode].RunAsync(request);
        Task.WaitAll(p, b);
        if (p.Result.Outcome != SyncOutcome.Completed || b.Result.Outcome != SyncOutcome.Completed)
            throw new InvalidOperationException($"sync failed: {p.Result.Error ?? b.Result.Error}");
        return p.Result;
    }

    public Row Measure(string memory, ulong dirtyPages, double divergent, bool remus, int reps, string kind = "grid")
    {
        var samples = new List<SyncStats>();
        for (int r = 0; r < reps; r++)
        {
            Dirty(dirtyPages, divergent);
            samples.Add(Sync(remus ? 1 : 0));
        }
        var check = _pm.FirstDifference(_bm);
        if (check is not null) throw new InvalidOperationException($"replicas differ after sync at page {check.Value.Page}");
        var sorted = samples.OrderBy(s => s.Pause.Total).ToList();
        var med = sorted[sorted.Count / 2];
        long essential = (long)med.DivergentPages * 4096 + BitmapTails(med) + (remus ? 0 : (long)med.UnionPages * 8);
        long wireNoDevice = med.Wire.Total - med.Wire.DeviceState;
        return new Row
        {
            Kind = kind, Memory = memory, Mode = remus ? "remus" : "plover", DirtyPages = dirtyPages, DivergentPct = divergent * 100,
            UnionPages = med.UnionPages, SentPages = med.DivergentPages,
            WireBytes = med.Wire.Total, BitmapBytes = med.Wire.Bitmaps, HashBytes = med.Wire.Hashes, PageBytes = med.Wire.Pages,
            DeviceBytes = med.Wire.DeviceState, ControlBytes = med.Wire.Control,
            Ratio = remus ? 0 : (double)wireNoDevice / essential,
            BitmapEncoding = $"{med.LocalBitmapEncoding}/{med.RemoteBitmapEncoding}", BitmapPayload = BitmapTails(med), BitmapRaw = (long)_pm.Blocks[0].Words * 8 * 2,
            PauseMs = med.Pause.Total / 1000, PauseP10 = sorted[sorted.Count / 10].Pause.Total / 1000,
            PauseP90 = sorted[Math.Min(sorted.Count - 1, sorted.Count * 9 / 10)].Pause.Total / 1000,
            Stop = med.Pause.Stop / 1000, Bitmap = med.Pause.Bitmap / 1000, Hash = med.Pause.Hash / 1000, Compare = med.Pause.Compare / 1000,
            Transfer = med.Pause.Transfer / 1000, Device = med.Pause.DeviceState / 1000, Apply = med.Pause.Apply / 1000, Resume = med.Pause.Resume / 1000,
        };
    }

    /// <summary>Bitmap payload bytes in both directions (the encoded tails, without frame headers).</summary>
    private static long BitmapTails(SyncStats s) => s.LocalBitmapBytes + s.RemoteBitmapBytes;

    /// <summary>Hashing n pages on one side alone, best of 5 (what each side would take on its own host).</summary>
    public double HashAloneMs(ulong n)
    {
        var block = _pm.Blocks[0];
        ulong words = block.Words;
        var bitmap = new ulong[words];
        for (ulong i = 0; i < n; i++) { ulong page = i * (block.Pages / n); bitmap[page / 64] |= 1UL << (int)(page % 64); }
        var hashes = new ulong[n];
        using var hasher = new PageHasher();
        double best = double.MaxValue;
        fixed (ulong* bm = bitmap) fixed (ulong* h = hashes)
            for (int r = 0; r < 5; r++)
            {
                long t = Stopwatch.GetTimestamp();
                hasher.HashPages(block.Host, block.Pages, bm, h);
                best = Math.Min(best, Stopwatch.GetElapsedTime(t).TotalMilliseconds);
            }
        return best;
    }

    public void Dispose()
    {
        foreach (var e in _primary.Concat(_backup)) e.Dispose();
        _pMain.Dispose();
        _bMain.Dispose();
        _pm.Dispose();
        _bm.Dispose();
    }
}
