// syncvm benchmark: two replicas in one process (synthetic guest memory, fake VMs with their own main threads),
// joined by an authenticated loopback TCP connection. Both replicas share this machine's cores, so the two sides'
// hashing competes for the same CPUs (with hashing threads "all", each side runs one thread per core).
//
// Phases (each guest memory size is built once, both replicas filled with the same random bytes):
//   grid    for each size in --sizes, dirty share (--dirty, % of guest pages) and divergent share (--divergent, % of
//           the dirty pages): Plover (replicate mode, hash, send what differs) and the checkpointing baseline (send
//           every page the primary dirtied), side by side.
//   target  on the first grid size: 10,000 dirty pages, 25% divergent, --target-reps syncs: Plover, checkpoint,
//           and Plover at every sub-block size in --sub-blocks (0 = whole pages), with and without the backup's
//           divergence comparison (the cost of recording divergence on the apply path).
//   resume  at the target point: the primary's guest resuming after the bitmaps (the union copied) or after the
//           compare (the divergent pages copied), the backup applying on one core or all (rows kind "resume", variant).
//   encryption  at the target point: Plover and checkpointing with frames encrypted (AES-GCM, the default) and
//           authenticated only (GMAC, "encrypt": false), same run, same memory: the cost of encrypting guest RAM.
//   transport  at the target point and at 100,000 dirty pages all divergent (throughput): Plover and checkpointing
//           over TCP and over UCX (UCX_TLS=tcp here, PLOVER_BENCH_UCX_TLS to choose; no RDMA device on these machines),
//           same run, same memory; throughput_mib_s = page bytes (frames and puts) / the primary's transfer time.
//           Plover's points also run over UCX with page puts ("ucx-puts": ucx.pagePuts, the pages put straight into the
//           backup's staging buffer, emulated by UCX over TCP here), whole pages and sub-blocks.
//   scale   pause and bytes against guest memory (--scale-sizes GiB) and dirty pages (--scale-dirty), hashing
//           threads 1 and all, 25% divergent, Plover and checkpoint (issue 11 item 7).
// Workloads (--workload): "realistic" (default) makes divergent pages differ the way they did under Redis SET load
// (Plover.Sync.SyntheticDivergence: 57% of pages in 1-8 bytes, 26% in 9-64, 13% in 65-512, 3.7% in 513-4095,
// 0.3% in all; 5.7 of 64 64-byte blocks on average); "word" changes one 8-byte word per divergent page. Dirty but
// identical pages get the same 8-byte write on both sides.
//
// sync.json (a plotting helper reads it; field names are stable):
//   bench, date, cores, reps, target_reps, workload, device_state_bytes, pages_per_frame, sub_block_bytes (the
//   engine default), note
//   rows[]         one per measured point (the median sync of its reps, by pause):
//     kind          "grid" | "target" | "subblocks" (the target point at one sub-block size) | "hash-alone" |
//                   "encryption" (the target point, encrypted and authenticated-only side by side) | "resume"
//     variant       (resume rows) where the guest resumed and where the backup applied
//     encrypt       frames AES-GCM encrypted (true, the default) or authenticated only (false)
//     memory        "1 GiB"; mode "plover" | "checkpoint"; workload; hash_threads (0 = all cores)
//     sub_block_bytes (0 = whole pages), record_divergence (the backup compared pages before applying)
//     dirty_pages, divergent_pct, union_pages, sent_pages (divergent pages), sub_blocks (sent), page_data_bytes
//     wire_bytes (every frame, both directions, headers and MACs), bitmap_bytes, hash_bytes, page_bytes,
//       device_state_bytes, control_bytes
//     ratio_to_essential  wire bytes without device state / (divergent * 4096 + both bitmaps + page hashes)
//     bitmap_encoding, bitmap_payload_bytes, bitmap_raw_bytes
//     pause_ms_median, pause_ms_p10, pause_ms_p90 (the whole sync), guest_pause_ms_median (how long the primary's guest
//     stood still: less when it resumed early), pause_ms_breakdown {stop, bitmap, snapshot, hash, compare, sub_blocks,
//       transfer, device_state, apply, resume} (the primary's, ms)
//     backup_apply_ms (the backup's own apply: copy into guest RAM, divergence comparison, device load)
//     backup_pause_ms_breakdown {stop, bitmap, hash, sub_blocks, transfer, device_state, apply, total} (the backup's)
//     divergence {pages, bytes, blocks64, mean_blocks64, histogram {"1-8","9-64","65-512","513-4095","4096"}}
//       (the backup's comparison of the median sync)
//   scale          {note, rows[]}, each row: memory_gib, memory, dirty_pages, hash_threads (1 or 0 = all cores,
//     with cores beside it), mode, divergent_pct, sub_block_bytes, union_pages, sent_pages, sub_blocks, wire_bytes,
//     page_bytes, hash_bytes, pause_ms_median, pause_ms_p10, pause_ms_p90, pause_ms_breakdown (as above)
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using Plover.Hashing;
using Plover.Sync;
using Plover.Transport;
using Plover.Transport.Ucx;

var opts = BenchOptions.Parse(args);
var rows = new List<Row>();
var scale = new List<Row>();
var keys = (Primary: IdentityKey.Generate(), Backup: IdentityKey.Generate());
Console.WriteLine($"syncvm bench: {Environment.ProcessorCount} cores, workload {opts.Workload}, grid sizes {string.Join(",", opts.SizesGiB)} GiB, " +
                  $"dirty {string.Join(",", opts.DirtyPct)}%, divergent {string.Join(",", opts.DivergentPct)}%, {opts.Reps} reps (median), " +
                  $"sub-blocks {string.Join(",", opts.SubBlocks)}, scale {string.Join(",", opts.ScaleSizesGiB)} GiB x {string.Join(",", opts.ScaleDirty)} pages, " +
                  $"device state {opts.DeviceStateBytes / 1024} KiB");
var total = Stopwatch.StartNew();

foreach (double gib in opts.SizesGiB.Concat(opts.ScaleSizesGiB).Distinct().OrderBy(g => g))
{
    var phase = Stopwatch.StartNew();
    Console.WriteLine($"\n=== {gib:0.#} GiB: filling two replicas ...");
    using var bench = new Replicas((ulong)(gib * (1UL << 30)), keys, opts);
    string memory = $"{gib:0.#} GiB";
    if (opts.SizesGiB.Contains(gib))
    {
        foreach (double dirty in opts.DirtyPct)
        foreach (double divergent in opts.DivergentPct)
        {
            var pages = (ulong)(bench.Pages * dirty / 100);
            rows.Add(bench.Measure(memory, pages, divergent / 100, EngineKey.Plover(opts), opts.Reps));
            rows.Add(bench.Measure(memory, pages, divergent / 100, EngineKey.Baseline, opts.Reps));
            Row.Print(rows[^2..]);
        }
    }
    if (gib == opts.SizesGiB.FirstOrDefault(-1))
    {
        Console.WriteLine($"\ntarget point: 10,000 dirty pages, 25% divergent, {opts.TargetReps} syncs each");
        var target = new List<Row>
        {
            bench.Measure(memory, 10_000, 0.25, EngineKey.Plover(opts), opts.TargetReps, "target"),
            bench.Measure(memory, 10_000, 0.25, EngineKey.Baseline, opts.TargetReps, "target"),
        };
        foreach (int b in opts.SubBlocks)
        {
            target.Add(bench.Measure(memory, 10_000, 0.25, EngineKey.Plover(opts) with { SubBlockBytes = b }, opts.TargetReps, "subblocks"));
            target.Add(bench.Measure(memory, 10_000, 0.25, EngineKey.Plover(opts) with { SubBlockBytes = b, RecordDivergence = false }, opts.TargetReps, "subblocks"));
        }
        rows.AddRange(target);
        Row.Print(target);
        Row.PrintDivergence(target[0]);
        // issue 18 item 3: where the primary's guest resumes (after the bitmaps: the union copied; after the compare:
        // the divergent pages copied) and the backup's apply on one core or all, same run, same memory.
        Console.WriteLine($"\nresume point and apply at the target point ({opts.TargetReps} syncs each)");
        var resume = new List<Row>();
        foreach (var point in new[] { ResumePoint.Bitmaps, ResumePoint.Compare })
            foreach (bool parallel in new[] { false, true })
            {
                var row = bench.Measure(memory, 10_000, 0.25, EngineKey.Plover(opts) with { Resume = point, ParallelApply = parallel }, opts.TargetReps, "resume");
                row.Variant = $"resume after {point.ToString().ToLowerInvariant()}, apply on {(parallel ? "all cores" : "one core")}";
                resume.Add(row);
            }
        rows.AddRange(resume);
        Row.PrintVariants(resume);
        // The cost of encryption: the same syncs with frames authenticated only, interleaved rep by rep is not
        // possible (one connection per engine pair), so each mode runs its reps back to back, encrypted last.
        Console.WriteLine($"\nencryption cost at the target point ({opts.TargetReps} syncs each): authenticated only vs encrypted");
        var crypto = new List<Row>();
        foreach (var engine in new[] { EngineKey.Plover(opts), EngineKey.Baseline })
            foreach (bool encrypt in new[] { false, true })
                crypto.Add(bench.Measure(memory, 10_000, 0.25, engine with { Encrypt = encrypt }, opts.TargetReps, "encryption"));
        rows.AddRange(crypto);
        Row.Print(crypto);
        Row.PrintEncryptionCost(crypto);
        // TCP vs UCX: the target point and a big all-divergent transfer (throughput), each transport's reps back to back.
        Console.WriteLine($"\ntransport at the target point and at 100,000 divergent pages ({opts.TargetReps} syncs each): TCP vs UCX " +
                          $"(UCX_TLS={Replicas.UcxTls}; no RDMA hardware here)");
        var transports = new List<Row>();
        foreach (var (engine, dirty, divergent) in new[] { (EngineKey.Plover(opts), 10_000UL, 0.25), (EngineKey.Plover(opts) with { SubBlockBytes = 0 }, 10_000UL, 0.25),
                                                           (EngineKey.Plover(opts) with { SubBlockBytes = 0 }, 100_000UL, 1.0),
                                                           (EngineKey.Baseline, 10_000UL, 0.25), (EngineKey.Baseline, 100_000UL, 1.0) })
            foreach (var (ucx, puts) in new[] { (false, false), (true, false), (true, true) })
                if (!puts || !engine.Checkpoint)   // a checkpoint has no hashes to check puts against: its pages go in frames
                    transports.Add(bench.Measure(memory, dirty, divergent, engine with { Ucx = ucx, Puts = puts }, opts.TargetReps, "transport"));
        rows.AddRange(transports);
        Row.PrintTransports(transports);
        double alone = bench.HashAloneMs(10_000);
        Console.WriteLine($"  hashing 10,000 pages on one side with nothing else running: {alone:F2} ms (in the sync both sides hash at once on the same cores)");
        rows.Add(new Row { Kind = "hash-alone", Memory = memory, DirtyPages = 10_000, PauseMs = alone });
    }
    if (opts.ScaleSizesGiB.Contains(gib))
    {
        Console.WriteLine($"\nscale: {memory}, 25% divergent, {opts.ScaleReps} syncs each");
        var mine = new List<Row>();
        foreach (ulong dirty in opts.ScaleDirty)
        {
            foreach (int threads in new[] { 1, 0 })
                mine.Add(bench.Measure(memory, dirty, 0.25, EngineKey.Plover(opts) with { Threads = threads }, opts.ScaleReps, "scale"));
            mine.Add(bench.Measure(memory, dirty, 0.25, EngineKey.Baseline, opts.ScaleReps, "scale"));
            Row.Print(mine[^3..]);
        }
        scale.AddRange(mine);
    }
    Console.WriteLine($"({memory} took {phase.Elapsed.TotalSeconds:F0} s)");
}

Console.WriteLine();
Console.WriteLine("grid:");
Row.Print(rows.Where(r => r.Kind == "grid").ToList());
Console.WriteLine("target point (10,000 dirty pages, 25% divergent) by sub-block size (sub 0 = whole pages; cmp = the backup compared pages for the divergence figures):");
Row.Print(rows.Where(r => r.Kind is "target" or "subblocks").ToList());
if (scale.Count > 0)
{
    Console.WriteLine("scale (25% divergent; threads 0 = all cores):");
    Row.PrintScale(scale);
}
foreach (var r in rows.Where(r => r.Kind == "target" && r.Mode == "plover"))
    Console.WriteLine($"target pause <= 5 ms at 10,000 dirty pages, 25% divergent, {r.Memory}: sync {r.PauseMs:F2} ms " +
                      $"({(r.PauseMs <= 5 ? "met" : "NOT met")}), guest {r.GuestMs:F2} ms ({(r.GuestMs <= 5 ? "met" : "NOT met")})");
Console.WriteLine($"bench time {total.Elapsed.TotalSeconds:F0} s");

Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(opts.Json))!);
using (var stream = File.Create(opts.Json))
using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
{
    json.WriteStartObject();
    json.WriteString("bench", "sync");
    json.WriteString("date", DateTime.UtcNow.ToString("o"));
    json.WriteNumber("cores", Environment.ProcessorCount);
    json.WriteNumber("reps", opts.Reps);
    json.WriteNumber("target_reps", opts.TargetReps);
    json.WriteString("workload", opts.Workload);
    json.WriteNumber("device_state_bytes", opts.DeviceStateBytes);
    json.WriteNumber("pages_per_frame", opts.PagesPerFrame);
    json.WriteNumber("sub_block_bytes", opts.SubBlockBytes);
    json.WriteNumber("sub_block_hash_bytes", opts.SubBlockHashBytes);
    json.WriteString("note", "both replicas in one process on the same cores; pause = the primary's whole sync (stop request to output " +
                             "released), guest pause = how long its guest stood still; " +
                             "ratio = wire bytes without device state / (divergent*4096 + both bitmaps + hashes)");
    json.WriteStartArray("rows");
    foreach (var r in rows) r.Write(json);
    json.WriteEndArray();
    // issue 18's target: the pause of a sync of 10,000 dirty pages, 25% divergent, <= 5 ms (the whole sync and the guest's)
    json.WriteStartArray("targets");
    foreach (var r in rows.Where(r => r.Kind == "target" && r.Mode == "plover"))
        foreach (var (what, value) in new[] { ("pause", r.PauseMs), ("guest_pause", r.GuestMs) })
        {
            json.WriteStartObject();
            json.WriteString("name", $"{what}_le_5ms_10k_dirty_{r.Memory.Replace(" ", "")}");
            json.WriteNumber("value", Math.Round(value, 3));
            json.WriteNumber("target", 5);
            json.WriteBoolean("met", value <= 5);
            json.WriteEndObject();
        }
    json.WriteEndArray();
    json.WriteStartObject("scale");
    json.WriteString("note", "Plover (replicate mode, default sub-blocks) and checkpoint; 25% of the dirty pages divergent; " +
                             "hash_threads 0 = every core (both replicas share them)");
    json.WriteStartArray("rows");
    foreach (var r in scale) r.Write(json, scale: true);
    json.WriteEndArray();
    json.WriteEndObject();
    json.WriteEndObject();
}
Console.WriteLine($"wrote {opts.Json}");

sealed class BenchOptions
{
    public double[] SizesGiB = [1, 4];
    public double[] DirtyPct = [1, 5, 20];
    public double[] DivergentPct = [0, 25, 50];
    public int Reps = 3;
    public int TargetReps = 15;
    public int[] SubBlocks = [0, 64, 128, 256, 512];
    public double[] ScaleSizesGiB = [1, 2, 4, 8];
    public ulong[] ScaleDirty = [1_000, 10_000, 100_000];
    public int ScaleReps = 3;
    public string Workload = "realistic";
    public int SubBlockBytes = SyncOptions.DefaultSubBlockBytes;
    public int SubBlockHashBytes = SyncOptions.DefaultSubBlockHashBytes;
    public int DeviceStateBytes = 256 * 1024;
    public int PagesPerFrame = 256;
    public string Json = "artifacts/bench/sync.json";

    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions();
        static double[] List(string s) => s.Length == 0 ? [] : s.Split(',').Select(double.Parse).ToArray();
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
                case "--sub-blocks": o.SubBlocks = List(Next()).Select(d => (int)d).ToArray(); break;
                case "--sub-block": o.SubBlockBytes = int.Parse(Next()); break;
                case "--sub-block-hash": o.SubBlockHashBytes = int.Parse(Next()); break;
                case "--scale-sizes": o.ScaleSizesGiB = List(Next()); break;
                case "--scale-dirty": o.ScaleDirty = List(Next()).Select(d => (ulong)d).ToArray(); break;
                case "--scale-reps": o.ScaleReps = int.Parse(Next()); break;
                case "--no-scale": o.ScaleSizesGiB = []; break;
                case "--workload":
                    o.Workload = Next();
                    if (o.Workload is not ("realistic" or "word")) throw new ArgumentException("--workload is realistic or word");
                    break;
                case "--device-state": o.DeviceStateBytes = int.Parse(Next()); break;
                case "--pages-per-frame": o.PagesPerFrame = int.Parse(Next()); break;
                case "--json": o.Json = Next(); break;
                case "--quick":
                    o.SizesGiB = [1]; o.DirtyPct = [1, 20]; o.DivergentPct = [0, 50]; o.Reps = 1; o.TargetReps = 5;
                    o.SubBlocks = [0, 64, 128]; o.ScaleSizesGiB = [1, 2]; o.ScaleDirty = [1_000, 10_000]; o.ScaleReps = 1;
                    break;
                default: throw new ArgumentException($"unknown argument {args[i]}");
            }
        }
        return o;
    }
}

/// <summary>Which engine pair a point runs on: Plover (with its hashing threads, sub-block size, divergence
/// comparison) or the checkpointing baseline.</summary>
readonly record struct EngineKey(bool Checkpoint, int Threads, int SubBlockBytes, bool RecordDivergence, bool Encrypt = true, bool Ucx = false,
                                 ResumePoint Resume = ResumePoint.Auto, bool ParallelApply = true, bool Puts = false)
{
    public static EngineKey Plover(BenchOptions o) => new(false, 0, o.SubBlockBytes, true);
    public static readonly EngineKey Baseline = new(true, 0, 0, false);
}

sealed class Row
{
    public string Kind = "grid", Memory = "", Mode = "", BitmapEncoding = "", Workload = "", Variant = "";
    public double MemoryGiB;
    public int HashThreads, SubBlockBytes;
    public bool RecordDivergence;
    public bool Encrypt = true;
    public bool Ucx, Puts;
    public ulong PutCount, PutBytes;
    public long BitmapPayload, BitmapRaw;
    public ulong DirtyPages, UnionPages, SentPages, SubBlocks, PageDataBytes;
    public double DivergentPct;
    public long WireBytes, BitmapBytes, HashBytes, PageBytes, DeviceBytes, ControlBytes;
    public double Ratio, PauseMs, PauseP10, PauseP90, GuestMs, Snapshot, Stop, Bitmap, Hash, Compare, SubBlockPhase, Transfer, Device, Apply, Resume, BackupApply;
    public DivergenceSample Divergence;
    public SyncPause BackupPause;

    public void Write(Utf8JsonWriter j, bool scale = false)
    {
        j.WriteStartObject();
        if (scale)
        {
            j.WriteNumber("memory_gib", MemoryGiB);
            j.WriteString("memory", Memory);
            j.WriteNumber("dirty_pages", DirtyPages);
            j.WriteNumber("hash_threads", HashThreads);
            j.WriteNumber("cores", Environment.ProcessorCount);
            j.WriteString("mode", Mode);
            j.WriteNumber("divergent_pct", DivergentPct);
            j.WriteNumber("sub_block_bytes", SubBlockBytes);
            j.WriteNumber("union_pages", UnionPages); j.WriteNumber("sent_pages", SentPages); j.WriteNumber("sub_blocks", SubBlocks);
            j.WriteNumber("wire_bytes", WireBytes); j.WriteNumber("page_bytes", PageBytes); j.WriteNumber("hash_bytes", HashBytes);
            WritePause(j);
            j.WriteEndObject();
            return;
        }
        j.WriteString("kind", Kind); j.WriteString("memory", Memory); j.WriteString("mode", Mode);
        if (Kind == "hash-alone")
        {
            j.WriteNumber("dirty_pages", DirtyPages); j.WriteNumber("hash_ms", Math.Round(PauseMs, 3));
            j.WriteEndObject();
            return;
        }
        if (Variant != "") j.WriteString("variant", Variant);
        j.WriteString("workload", Workload); j.WriteNumber("hash_threads", HashThreads);
        j.WriteNumber("sub_block_bytes", SubBlockBytes); j.WriteBoolean("record_divergence", RecordDivergence); j.WriteBoolean("encrypt", Encrypt);
        j.WriteString("transport", Puts ? "ucx-puts" : Ucx ? "ucx" : "tcp");
        if (Transfer > 0) j.WriteNumber("throughput_mib_s", Math.Round(Rate(this), 1));
        if (Puts) { j.WriteNumber("puts", PutCount); j.WriteNumber("put_bytes", PutBytes); }
        j.WriteNumber("dirty_pages", DirtyPages); j.WriteNumber("divergent_pct", DivergentPct);
        j.WriteNumber("union_pages", UnionPages); j.WriteNumber("sent_pages", SentPages);
        j.WriteNumber("sub_blocks", SubBlocks); j.WriteNumber("page_data_bytes", PageDataBytes);
        j.WriteNumber("wire_bytes", WireBytes); j.WriteNumber("bitmap_bytes", BitmapBytes); j.WriteNumber("hash_bytes", HashBytes);
        j.WriteNumber("page_bytes", PageBytes); j.WriteNumber("device_state_bytes", DeviceBytes); j.WriteNumber("control_bytes", ControlBytes);
        j.WriteNumber("ratio_to_essential", Math.Round(Ratio, 4));
        j.WriteString("bitmap_encoding", BitmapEncoding); j.WriteNumber("bitmap_payload_bytes", BitmapPayload); j.WriteNumber("bitmap_raw_bytes", BitmapRaw);
        WritePause(j);
        j.WriteNumber("backup_apply_ms", Math.Round(BackupApply, 3));
        j.WriteStartObject("backup_pause_ms_breakdown");
        j.WriteNumber("stop", Math.Round(BackupPause.Stop / 1000, 3)); j.WriteNumber("bitmap", Math.Round(BackupPause.Bitmap / 1000, 3));
        j.WriteNumber("hash", Math.Round(BackupPause.Hash / 1000, 3)); j.WriteNumber("sub_blocks", Math.Round(BackupPause.SubBlocks / 1000, 3));
        j.WriteNumber("transfer", Math.Round(BackupPause.Transfer / 1000, 3)); j.WriteNumber("device_state", Math.Round(BackupPause.DeviceState / 1000, 3));
        j.WriteNumber("apply", Math.Round(BackupPause.Apply / 1000, 3)); j.WriteNumber("total", Math.Round(BackupPause.Total / 1000, 3));
        j.WriteEndObject();
        j.WriteStartObject("divergence");
        j.WriteNumber("pages", Divergence.Pages); j.WriteNumber("bytes", Divergence.Bytes); j.WriteNumber("blocks64", Divergence.Blocks64);
        j.WriteNumber("mean_blocks64", Math.Round(Divergence.MeanBlocks64, 3));
        j.WriteStartObject("histogram");
        for (int i = 0; i < DivergenceHistogram.Buckets; i++) j.WriteNumber(DivergenceHistogram.Labels[i], Divergence.Histogram[i]);
        j.WriteEndObject();
        j.WriteEndObject();
        j.WriteEndObject();
    }

    private void WritePause(Utf8JsonWriter j)
    {
        j.WriteNumber("pause_ms_median", Math.Round(PauseMs, 3)); j.WriteNumber("pause_ms_p10", Math.Round(PauseP10, 3)); j.WriteNumber("pause_ms_p90", Math.Round(PauseP90, 3));
        j.WriteNumber("guest_pause_ms_median", Math.Round(GuestMs, 3));
        j.WriteStartObject("pause_ms_breakdown");
        j.WriteNumber("stop", Math.Round(Stop, 3)); j.WriteNumber("bitmap", Math.Round(Bitmap, 3)); j.WriteNumber("snapshot", Math.Round(Snapshot, 3)); j.WriteNumber("hash", Math.Round(Hash, 3));
        j.WriteNumber("compare", Math.Round(Compare, 3)); j.WriteNumber("sub_blocks", Math.Round(SubBlockPhase, 3));
        j.WriteNumber("transfer", Math.Round(Transfer, 3)); j.WriteNumber("device_state", Math.Round(Device, 3));
        j.WriteNumber("apply", Math.Round(Apply, 3)); j.WriteNumber("resume", Math.Round(Resume, 3));
        j.WriteEndObject();
    }

    /// <summary>Encrypted vs authenticated-only rows of one mode, side by side: the pause and the transfer phase.</summary>
    /// <summary>Page bytes moved (frames, and with puts the bytes put) per second of the primary's transfer phase.</summary>
    public static double Rate(Row r) => r.Transfer > 0 ? (r.PageBytes + (long)r.PutBytes) / 1048576.0 / (r.Transfer / 1000) : 0;

    /// <summary>TCP, UCX and UCX with page puts side by side (wire MiB: frames only; put MiB went one-sided).</summary>
    public static void PrintTransports(IReadOnlyList<Row> rows)
    {
        Console.WriteLine($"{"mode",-10} {"sub",4} {"dirty",7} {"wire MiB tcp",12} {"ucx",6} {"puts",6} {"put MiB",7} {"puts#",6}  {"pause ms tcp",12} {"ucx",7} {"puts",7}   " +
                          $"{"xfer ms tcp",11} {"ucx",7} {"puts",7}   {"MiB/s tcp",9} {"ucx",5} {"puts",5}");
        foreach (var group in rows.GroupBy(r => (r.Mode, r.SubBlockBytes, r.DirtyPages)))
        {
            var t = group.First(r => !r.Ucx);
            var u = group.First(r => r.Ucx && !r.Puts);
            var p = group.FirstOrDefault(r => r.Puts);
            string P(Func<Row, double> f, string format, int width) => (p is null ? "-" : f(p).ToString(format)).PadLeft(width);
            Console.WriteLine($"{t.Mode,-10} {t.SubBlockBytes,4} {t.DirtyPages,7} {t.WireBytes / 1048576.0,12:F2} {u.WireBytes / 1048576.0,6:F2} {P(r => r.WireBytes / 1048576.0, "F2", 6)} " +
                              $"{P(r => r.PutBytes / 1048576.0, "F2", 7)} {P(r => r.PutCount, "F0", 6)}  {t.PauseMs,12:F2} {u.PauseMs,7:F2} {P(r => r.PauseMs, "F2", 7)}   " +
                              $"{t.Transfer,11:F2} {u.Transfer,7:F2} {P(r => r.Transfer, "F2", 7)}   {Rate(t),9:F0} {Rate(u),5:F0} {P(Rate, "F0", 5)}");
        }
    }

    public static void PrintEncryptionCost(IReadOnlyList<Row> rows)
    {
        Console.WriteLine($"{"mode",-10} {"wire MiB",9}  {"pause ms auth-only",18} {"encrypted",10} {"cost",7}   {"xfer ms auth-only",17} {"encrypted",10}   {"guest ms auth-only",18} {"encrypted",10}");
        foreach (var mode in rows.Select(r => r.Mode).Distinct())
        {
            var a = rows.First(r => r.Mode == mode && !r.Encrypt);
            var e = rows.First(r => r.Mode == mode && r.Encrypt);
            Console.WriteLine($"{mode,-10} {e.WireBytes / 1048576.0,9:F2}  {a.PauseMs,18:F2} {e.PauseMs,10:F2} {e.PauseMs - a.PauseMs,+7:+0.00;-0.00}   {a.Transfer,17:F2} {e.Transfer,10:F2}   {a.GuestMs,18:F2} {e.GuestMs,10:F2}");
        }
    }

    public static void Print(IReadOnlyList<Row> rows)
    {
        Console.WriteLine($"{"memory",-7} {"dirty",7} {"div%",4} {"mode",-10} {"thr",3} {"sub",4} {"cmp",3} {"union",7} {"sent",7} {"sub-blk",8} {"wire MiB",9} {"ratio",6} " +
                          $"{"pause ms",9} {"p10",7} {"p90",7} {"guest",6}  {"stop",5} {"bitmap",6} {"snap",5} {"hash",6} {"cmp",5} {"subblk",6} {"xfer",7} {"dev",5} {"apply",6} {"resume",6} {"b.apply",7} {"b.subblk",7}");
        foreach (var r in rows)
            Console.WriteLine($"{r.Memory,-7} {r.DirtyPages,7} {r.DivergentPct,4:0} {r.Mode,-10} {(r.HashThreads == 0 ? "all" : r.HashThreads.ToString()),3} " +
                              $"{r.SubBlockBytes,4} {(r.RecordDivergence ? "yes" : "no"),3} {r.UnionPages,7} {r.SentPages,7} {r.SubBlocks,8} {r.WireBytes / 1048576.0,9:F3} " +
                              $"{(r.Ratio > 0 ? r.Ratio.ToString("F3") : "-"),6} {r.PauseMs,9:F2} {r.PauseP10,7:F2} {r.PauseP90,7:F2} {r.GuestMs,6:F2}  {r.Stop,5:F2} {r.Bitmap,6:F2} " +
                              $"{r.Snapshot,5:F2} {r.Hash,6:F2} {r.Compare,5:F2} {r.SubBlockPhase,6:F2} {r.Transfer,7:F2} {r.Device,5:F2} {r.Apply,6:F2} {r.Resume,6:F2} {r.BackupApply,7:F3} {r.BackupPause.SubBlocks / 1000,7:F2}");
    }

    /// <summary>Rows of one point that differ in how the engine works (Variant): pause, guest pause and the phases.</summary>
    public static void PrintVariants(IReadOnlyList<Row> rows)
    {
        Console.WriteLine($"{"variant",-44} {"pause ms",9} {"p10",7} {"p90",7} {"guest",6}  {"snap",5} {"hash",6} {"cmp",5} {"subblk",6} {"xfer",6} {"apply",6} {"b.apply",7}");
        foreach (var r in rows)
            Console.WriteLine($"{r.Variant,-44} {r.PauseMs,9:F2} {r.PauseP10,7:F2} {r.PauseP90,7:F2} {r.GuestMs,6:F2}  {r.Snapshot,5:F2} {r.Hash,6:F2} {r.Compare,5:F2} " +
                              $"{r.SubBlockPhase,6:F2} {r.Transfer,6:F2} {r.Apply,6:F2} {r.BackupApply,7:F3}");
    }

    public static void PrintScale(IReadOnlyList<Row> rows)
    {
        Console.WriteLine($"{"memory",-7} {"dirty",7} {"mode",-10} {"threads",7} {"union",7} {"sent",7} {"wire MiB",9} {"pause ms",9} {"p10",7} {"p90",7}  " +
                          $"{"bitmap",6} {"hash",7} {"subblk",6} {"xfer",7} {"apply",6}");
        foreach (var r in rows)
            Console.WriteLine($"{r.Memory,-7} {r.DirtyPages,7} {r.Mode,-10} {(r.Mode == "checkpoint" ? "-" : r.HashThreads == 0 ? $"all ({Environment.ProcessorCount})" : r.HashThreads.ToString()),7} " +
                              $"{r.UnionPages,7} {r.SentPages,7} {r.WireBytes / 1048576.0,9:F3} {r.PauseMs,9:F2} {r.PauseP10,7:F2} {r.PauseP90,7:F2}  " +
                              $"{r.Bitmap,6:F2} {r.Hash,7:F2} {r.SubBlockPhase,6:F2} {r.Transfer,7:F2} {r.Apply,6:F2}");
    }

    public static void PrintDivergence(Row r)
    {
        var d = r.Divergence;
        if (d.Pages == 0) return;
        Console.WriteLine($"  the backup's comparison (median sync): {d.Pages} divergent pages, " +
                          string.Join(", ", Enumerable.Range(0, DivergenceHistogram.Buckets).Select(i => $"{DivergenceHistogram.Labels[i]} B: {100.0 * d.Histogram[i] / d.Pages:F1}%")) +
                          $"; {d.MeanBlocks64:F2} of 64 64-byte blocks differ per page");
    }
}

/// <summary>A primary and a backup with one memory each, and engine pairs (created on first use) over loopback.</summary>
sealed unsafe class Replicas : IDisposable
{
    private readonly SyntheticGuestMemory _pm, _bm;
    private readonly DedicatedMainThread _pMain = new("primary-main"), _bMain = new("backup-main");
    private readonly SyntheticVm _pVm, _bVm;
    private readonly Dictionary<EngineKey, (SyncEngine Primary, SyncEngine Backup)> _engines = new();
    private readonly Socket _listener;
    private readonly (IdentityKey Primary, IdentityKey Backup) _keys;
    private readonly BenchOptions _opts;
    private readonly Random _rng = new(12345);
    private readonly double _gib;
    private ulong _epoch;
    private readonly Dictionary<bool, (UcxWorker Primary, UcxWorker Backup)> _ucx = new();   // by page puts
    /// <summary>UCX's transports for the UCX rows (PLOVER_BENCH_UCX_TLS, default tcp: these machines have no RDMA device).</summary>
    public static readonly string UcxTls = Environment.GetEnvironmentVariable("PLOVER_BENCH_UCX_TLS") is { Length: > 0 } t ? t : "tcp";

    public Replicas(ulong bytes, (IdentityKey Primary, IdentityKey Backup) keys, BenchOptions opts)
    {
        _keys = keys;
        _opts = opts;
        _gib = bytes / (double)(1UL << 30);
        _pm = new SyntheticGuestMemory(("pc.ram", bytes));
        _bm = new SyntheticGuestMemory(("pc.ram", bytes));
        _pm.FillRandom(1);
        _bm.CopyFrom(_pm);
        _pVm = new SyntheticVm(_pm, _pMain) { DeviceState = RandomNumberGenerator.GetBytes(opts.DeviceStateBytes) };
        _bVm = new SyntheticVm(_bm, _bMain);
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(2);
    }

    public ulong Pages => _pm.TotalPages;

    private (SyncEngine Primary, SyncEngine Backup) Engines(EngineKey k)
    {
        if (_engines.TryGetValue(k, out var pair)) return pair;
        var options = new SyncOptions
        {
            Checkpoint = k.Checkpoint, HashThreads = k.Threads, SubBlockBytes = k.SubBlockBytes, RecordDivergence = k.RecordDivergence,
            SubBlockHashBytes = _opts.SubBlockHashBytes, ResumePoint = k.Resume, ParallelApply = k.ParallelApply,
            PagesPerFrame = _opts.PagesPerFrame, Timeout = TimeSpan.FromSeconds(60), Log = m => Console.Error.WriteLine(m),
        };
        var primary = new SyncEngine(SyncRole.Primary, _pm, _pVm, _pMain, null, options);
        var backup = new SyncEngine(SyncRole.Backup, _bm, _bVm, _bMain, null, options);
        var publicKeys = new Dictionary<int, byte[]> { [1] = _keys.Primary.PublicKey, [2] = _keys.Backup.PublicKey };
        if (k.Ucx && !_ucx.ContainsKey(k.Puts))
        {
            // PLOVER_BENCH_UCX_ONE_SIDED=1: page frames written one-sided (ucx.oneSided; emulated by UCX over TCP here)
            var settings = new UcxSettings(UcxProgress.Event, new Dictionary<string, string> { ["UCX_TLS"] = UcxTls },
                                           OneSided: Environment.GetEnvironmentVariable("PLOVER_BENCH_UCX_ONE_SIDED") == "1", PagePuts: k.Puts);
            _ucx[k.Puts] = (new UcxWorker(settings, "bench-primary"), new UcxWorker(settings, "bench-backup"));
        }
        var workers = k.Ucx ? _ucx[k.Puts] : default;
        var accept = Task.Run(() => SyncConnection.Accept(_listener, new ClusterIdentity("bench", 2, _keys.Backup, publicKeys, null, k.Encrypt), 1,
                                                          TimeSpan.FromSeconds(10), ucx: workers.Backup));
        primary.Connection = SyncConnection.Connect((IPEndPoint)_listener.LocalEndPoint!, new ClusterIdentity("bench", 1, _keys.Primary, publicKeys, null, k.Encrypt), 2,
                                                    TimeSpan.FromSeconds(10), ucx: workers.Primary);
        backup.Connection = accept.Result;
        _engines[k] = (primary, backup);
        // warm up (JIT tiers, buffers) with a few small syncs: the first point measured on a fresh pair was slower
        for (int i = 0; i < 4; i++)
        {
            Dirty(2000, 0.25);
            Sync(primary, backup);
        }
        return (primary, backup);
    }

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
            if (_rng.NextDouble() < divergent)
            {
                if (_opts.Workload == "realistic")
                {
                    SyntheticDivergence.Apply(_rng, _pm.Page(0, page), _bm.Page(0, page));
                    _pm.Touch(0, page);
                    _bm.Touch(0, page);
                }
                else
                {
                    ulong value = (ulong)_rng.NextInt64();
                    int offset = 8 + _rng.Next(500) * 8;
                    _pm.Write(0, page, offset, value);
                    _bm.Write(0, page, offset, ~value);
                }
            }
            else
            {
                ulong value = (ulong)_rng.NextInt64();
                int offset = 8 + _rng.Next(500) * 8;
                _pm.Write(0, page, offset, value);
                _bm.Write(0, page, offset, value);
            }
        }
    }

    private (SyncStats Primary, SyncStats Backup) Sync(SyncEngine primary, SyncEngine backup)
    {
        var request = new SyncRequest(++_epoch, (long)_epoch);
        var p = primary.RunAsync(request);
        var b = backup.RunAsync(request);
        Task.WaitAll(p, b);
        if (p.Result.Outcome != SyncOutcome.Completed || b.Result.Outcome != SyncOutcome.Completed)
            throw new InvalidOperationException($"sync failed: {p.Result.Error ?? b.Result.Error}");
        return (p.Result, b.Result);
    }

    public Row Measure(string memory, ulong dirtyPages, double divergent, EngineKey engine, int reps, string kind = "grid")
    {
        var (primary, backup) = Engines(engine);
        var samples = new List<(SyncStats P, SyncStats B)>();
        for (int r = 0; r < reps; r++)
        {
            Dirty(dirtyPages, divergent);
            samples.Add(Sync(primary, backup));
        }
        var check = _pm.FirstDifference(_bm);
        if (check is not null) throw new InvalidOperationException($"replicas differ after sync at page {check.Value.Page}");
        var sorted = samples.OrderBy(s => s.P.Pause.Total).ToList();
        var (med, medB) = sorted[sorted.Count / 2];
        bool checkpoint = engine.Checkpoint;
        long essential = (long)med.DivergentPages * 4096 + BitmapTails(med) + (checkpoint ? 0 : (long)med.UnionPages * 8);
        long wireNoDevice = med.Wire.Total - med.Wire.DeviceState;
        return new Row
        {
            Kind = kind, Memory = memory, MemoryGiB = _gib, Mode = checkpoint ? "checkpoint" : "plover", Workload = _opts.Workload,
            HashThreads = engine.Threads, SubBlockBytes = med.SubBlockBytes, RecordDivergence = engine.RecordDivergence, Encrypt = engine.Encrypt, Ucx = engine.Ucx, Puts = engine.Puts, PutCount = med.Puts, PutBytes = med.PutBytes,
            DirtyPages = dirtyPages, DivergentPct = divergent * 100,
            UnionPages = med.UnionPages, SentPages = med.DivergentPages, SubBlocks = med.SubBlocks, PageDataBytes = med.PageDataBytes,
            WireBytes = med.Wire.Total, BitmapBytes = med.Wire.Bitmaps, HashBytes = med.Wire.Hashes, PageBytes = med.Wire.Pages,
            DeviceBytes = med.Wire.DeviceState, ControlBytes = med.Wire.Control,
            Ratio = checkpoint ? 0 : (double)wireNoDevice / essential,
            BitmapEncoding = $"{med.LocalBitmapEncoding}/{med.RemoteBitmapEncoding}", BitmapPayload = BitmapTails(med), BitmapRaw = (long)_pm.Blocks[0].Words * 8 * 2,
            GuestMs = med.Pause.Guest / 1000, Snapshot = med.Pause.Snapshot / 1000,
            PauseMs = med.Pause.Total / 1000, PauseP10 = sorted[sorted.Count / 10].P.Pause.Total / 1000,
            PauseP90 = sorted[Math.Min(sorted.Count - 1, sorted.Count * 9 / 10)].P.Pause.Total / 1000,
            Stop = med.Pause.Stop / 1000, Bitmap = med.Pause.Bitmap / 1000, Hash = med.Pause.Hash / 1000, Compare = med.Pause.Compare / 1000,
            SubBlockPhase = med.Pause.SubBlocks / 1000, Transfer = med.Pause.Transfer / 1000, Device = med.Pause.DeviceState / 1000,
            Apply = med.Pause.Apply / 1000, Resume = med.Pause.Resume / 1000, BackupApply = medB.Pause.Apply / 1000,
            Divergence = medB.Divergence, BackupPause = medB.Pause,
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
        foreach (var (p, b) in _engines.Values) { p.Dispose(); b.Dispose(); p.Connection?.Dispose(); b.Connection?.Dispose(); }
        _listener.Dispose();
        foreach (var (p, b) in _ucx.Values) { p.Dispose(); b.Dispose(); }
        _pMain.Dispose();
        _bMain.Dispose();
        _pm.Dispose();
        _bm.Dispose();
    }
}
