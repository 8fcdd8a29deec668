using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Plover.Config;
using Plover.Consensus;
using Plover.Hashing;
using Plover.Node;
using Plover.Transport;
using Plover.Wire;
using Google.Protobuf;

namespace Plover.Cli;

/// <summary>
/// <c>plover bench-node</c>: a consensus node without a VM, for tests and benchmarks. It applies every committed
/// entry to a running digest (CityHash64 over the previous digest, index, type and payload hash) and checks that
/// each client's synthetic inputs arrive in order. Give the same workloads to both replicas: whichever leads runs
/// the next one not done yet and commits its result to the log, so every node knows what is done and a new leader
/// resumes where the old one stopped. The leader also names the other replica its backup in a ROLE entry (it has no
/// VM to sync), so that either replica may lead after a failure.
/// Lines on stdout, one event each (key=value, or JSON after RESULT):
/// <code>
///   ROLE node=2 role=leader term=3 leader=2 unix_ns=...     on every role/ballot/leader change
///   STATUS node=2 role=... term=... commit=N applied=N inputs=N violations=N gaps=N digest=HEX from=1:100000,2:1000 ...
///          (violations: an index or a client's input out of order or twice; gaps: inputs lost with a deposed leader)
///   CHECKPOINT node=2 index=N digest=HEX                    every --checkpoint-every entries
///   RESULT {json}                                           when a workload's result commits (on every node;
///                                                           "node" in the JSON names the leader that ran it)
///   DONE name                                               right after its RESULT line
///   WROTE path                                              once every result committed and --json is written
/// </code>
/// </summary>
internal static class BenchNodeCommand
{
    public static int Run(ReadOnlySpan<string> args)
    {
        var cl = CommandLine.Parse("bench-node", args,
            ["config", "node", "workload", "json", "report-ms", "checkpoint-every", "connect-timeout-ms", "trace-hops", "hops-json"]);
        cl.NoPositionals();
        var workloads = cl.All("workload").Select(BenchWorkload.Parse).ToList();
        var dup = workloads.GroupBy(w => w.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new UsageException($"bench-node: workload name '{dup.Key}' used twice");
        if (workloads.Count > short.MaxValue) throw new UsageException("bench-node: too many workloads");
        int reportMs = cl.Int("report-ms", 200, 10);
        int checkpointEvery = cl.Int("checkpoint-every", 10000, 1);
        int connectTimeoutMs = cl.Int("connect-timeout-ms", 10000, 0);
        string? json = cl.Optional("json");
        int traceHops = cl.Int("trace-hops", 0, 0);
        string? hopsJson = cl.Optional("hops-json");
        if (hopsJson is not null && traceHops == 0) throw new UsageException("bench-node: --hops-json needs --trace-hops N");
        using var host = NodeHost.FromCommandLine(cl, "bench-node", o => o with { TraceHopsEvery = traceHops });
        return new BenchNode(host, workloads, checkpointEvery, json, hopsJson).Run(reportMs, connectTimeoutMs);
    }
}

internal sealed class BenchNode
{
    private readonly NodeHost _host;
    private readonly ConsensusDriver _driver;
    private readonly int _self;
    private readonly List<BenchWorkload> _workloads;
    private readonly int _checkpointEvery;
    private readonly string? _jsonPath;
    private readonly string? _hopsPath;
    private readonly object _stateLock = new();

    // Applied state (consensus thread; read under _stateLock).
    private long _applied;
    private ulong _digest;
    private long _inputs;
    private long _violations;
    private long _gaps;
    private readonly SortedDictionary<int, long> _byProposer = new();
    private readonly Dictionary<(int Proposer, int Workload, int Client), long> _lastSeq = new();

    // Roughly what syncvm leaves (it truncates after every sync, at most maxEpochMs = 200 ms apart).
    private const long CompactEvery = 5_000;
    private const long RetainedEntries = 20_000;
    private volatile ActiveWorkload? _active;
    private int _workloadsFailed;
    private int _runs;   // consensus workload runs on this node: each gets its own id, a rerun included
    private const int MaxAttempts = 3;
    private readonly int[] _attempts;   // failed runs of each workload on this node

    // Committed results, by workload index (consensus thread; read under _stateLock). A result is an input
    // (BenchInput header: workload ResultMarker, client = workload index + 1) followed by its JSON.
    private const int ResultMarker = -1;
    private readonly string?[] _committedResults;
    private long _resultSeq;
    private readonly Ping _pongParsed = new();

    public BenchNode(NodeHost host, List<BenchWorkload> workloads, int checkpointEvery, string? jsonPath, string? hopsPath)
    {
        _hopsPath = hopsPath;
        _host = host;
        _driver = host.Driver;
        _self = host.Self.Id;
        _workloads = workloads;
        _checkpointEvery = checkpointEvery;
        _jsonPath = jsonPath;
        _committedResults = new string?[workloads.Count];
        _attempts = new int[workloads.Count];
        _driver.Committed = OnCommitted;
        _driver.StateChanged = OnStateChanged;
        host.Dispatcher.Register(FrameType.Pong, OnPong);
    }

    public int Run(int reportMs, int connectTimeoutMs)
    {
        _host.Start(connectTimeoutMs);
        Emit($"ROLE node={_self} role={Role(_driver.Role)} term={_driver.Term} leader={_driver.LeaderId} unix_ns={UnixNanos()}");
        var runner = new Thread(RunWorkloads) { IsBackground = true, Name = "bench-workloads" };
        runner.Start();
        string last = "";
        while (!_host.StopRequested.WaitOne(reportMs))
        {
            string status = StatusLine();
            if (status != last) Emit(last = status);
        }
        _driver.Dispose();
        Emit(StatusLine());
        return _driver.Failure is null && _workloadsFailed == 0 ? 0 : 1;
    }

    private static void Emit(string line)
    {
        Console.Out.WriteLine(line);
        Console.Out.Flush();
    }

    private static long UnixNanos() => (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) * 100;

    private static string Role(ConsensusRole r) => r.ToString().ToLowerInvariant();

    private string StatusLine()
    {
        lock (_stateLock)
        {
            var from = string.Join(",", _byProposer.Select(kv => $"{kv.Key}:{kv.Value}"));
            return $"STATUS node={_self} role={Role(_driver.Role)} term={_driver.Term} leader={_driver.LeaderId} commit={_driver.CommitIndex} " +
                   $"applied={_applied} inputs={_inputs} violations={_violations} gaps={_gaps} digest={_digest:x16} from={(from.Length == 0 ? "-" : from)} " +
                   $"max_tick_lateness_us={_driver.MaxTickLatenessUs:F0} gc={GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)} " +
                   $"gc_pause_ms={GC.GetTotalPauseDuration().TotalMilliseconds:F1}";
        }
    }

    // ---------------------------------------------------------------- consensus thread

    private void OnStateChanged(ConsensusStatus s) =>
        Emit($"ROLE node={_self} role={Role(s.Role)} term={s.Ballot.Round} leader={s.LeaderId} unix_ns={UnixNanos()}");

    private void OnCommitted(LogEntry e)
    {
        long now = Stopwatch.GetTimestamp();
        ulong digest;
        int done = -1;
        lock (_stateLock)
        {
            Span<byte> mix = stackalloc byte[25];
            BitConverter.TryWriteBytes(mix, _digest);
            BitConverter.TryWriteBytes(mix[8..], e.Index);
            mix[16] = (byte)e.Type;
            BitConverter.TryWriteBytes(mix[17..], CityHash.Hash64(e.Payload.Span));
            _digest = digest = CityHash.Hash64(mix);
            if (e.Index != _applied + 1) _violations++;   // the driver must deliver every index once, in order
            _applied = e.Index;
            if (e.Type == EntryType.Input && BenchInput.TryRead(e.Payload.Span, out int proposer, out int workload, out int client, out long seq, out long sent))
            {
                _inputs++;
                _byProposer[proposer] = _byProposer.GetValueOrDefault(proposer) + 1;
                var key = (proposer, workload, client);
                // A client's inputs must commit in order, each once. A gap is not a violation: proposals still
                // uncommitted when their leader was deposed are lost (the client would retry); counted apart.
                long last = _lastSeq.GetValueOrDefault(key);
                if (seq <= last) _violations++;
                else if (seq > last + 1 && workload > 0) _gaps++;
                _lastSeq[key] = seq;
                if (proposer == _self && workload == 0) _barrier.Release();
                else if (proposer == _self && workload > 0) _active?.OnCommitted(workload, client, now - sent, now, e.Index);
                // The first committed result of a workload counts (a second one could only come from a rerun).
                if (workload == ResultMarker && (uint)(client - 1) < (uint)_committedResults.Length && _committedResults[client - 1] is null)
                {
                    done = client - 1;
                    _committedResults[done] = Encoding.UTF8.GetString(e.Payload.Span[BenchInput.HeaderSize..]);
                }
            }
        }
        if (done >= 0)
        {
            Emit($"RESULT {_committedResults[done]}");
            Emit($"DONE {_workloads[done].Name}");
        }
        if (e.Index % _checkpointEvery == 0) Emit($"CHECKPOINT node={_self} index={e.Index} digest={digest:x16}");
        // Stand-in for syncvm, which truncates the log after each sync: keep the last RetainedEntries.
        if (e.Index % CompactEvery == 0 && e.Index > RetainedEntries) _driver.Compact(e.Index - RetainedEntries);
    }

    // ---------------------------------------------------------------- workloads

    /// <summary>
    /// Until the process stops: whenever this node leads, it names the other replica its backup (ROLE entry) and
    /// runs the next workload whose result has not committed yet; once every result has, it writes --json.
    /// </summary>
    private void RunWorkloads()
    {
        int peer = OtherReplica();
        Ballot? roleProposed = null;
        bool wrote = false;
        while (!_host.Stopping)
        {
            // A new leader's own ROLE entry names no backup, which would bar the other replica from ever leading.
            // Here there is no VM to sync, so the backup is always in sync: name it at once, as Replica does after
            // its full sync.
            var ballot = _driver.Ballot;
            if (_driver.IsLeader && roleProposed != ballot && _driver.Propose(EntryType.Role, EntryPayloads.EncodeRole(ballot, _self, peer)))
                roleProposed = ballot;
            int next = NextWorkload();
            if (next < 0 && !wrote)
            {
                wrote = true;
                WriteJson();
            }
            if (next >= 0 && ReadyToMeasure())
            {
                RunAndCommit(next);
                continue;
            }
            _host.StopRequested.WaitOne(1);
        }
    }

    /// <summary>The other VM replica (primary or backup): the ping target and the backup our ROLE entries name.</summary>
    private int OtherReplica() =>
        _host.Config.Nodes.First(n => n.Id != _self && (n.Role == NodeRole.Primary || n.Role == NodeRole.Backup)).Id;

    /// <summary>The first workload without a committed result, or -1 when all are done.</summary>
    private int NextWorkload()
    {
        lock (_stateLock) return Array.FindIndex(_committedResults, r => r is null);
    }

    private bool Committed(int workload)
    {
        lock (_stateLock) return _committedResults[workload] is not null;
    }

    private void RunAndCommit(int i)
    {
        var w = _workloads[i];
        NodeHost.Log($"bench-node {_self}: leader in ballot {_driver.Ballot}: running workload {w.Name} ({i + 1} of {_workloads.Count})");
        string result;
        string? error;
        if (w.Kind == "ping") (result, error) = RunPing(w);
        else if (_runs < short.MaxValue) (result, error) = RunConsensus(w, ++_runs);
        else result = ResultJson(w, new LatencyRecorder(0), 0, error = $"more than {short.MaxValue} runs on node {_self}");
        // A run cut short (mostly by an election on a busy host) runs again, up to MaxAttempts times on this node;
        // after that its error stands in the results.
        if (error is not null && ++_attempts[i] < MaxAttempts)
        {
            NodeHost.Log($"bench-node {_self}: workload {w.Name} failed ({error}): running it again");
            return;
        }
        // The result goes through the log: every node learns that this workload is done. If it does not commit
        // (leadership lost), whoever leads next runs the workload again.
        var text = Encoding.UTF8.GetBytes(result);
        var payload = new byte[BenchInput.HeaderSize + text.Length];
        BenchInput.Write(payload, _self, ResultMarker, i + 1, ++_resultSeq, Stopwatch.GetTimestamp());
        text.CopyTo(payload, BenchInput.HeaderSize);
        var waited = Stopwatch.StartNew();
        bool proposed = false;
        while (!Committed(i) && _driver.IsLeader && waited.ElapsedMilliseconds < 5000)
        {
            proposed = proposed || _driver.Propose(EntryType.Input, payload);
            Thread.Sleep(1);
        }
        if (!Committed(i))
            NodeHost.Log($"bench-node {_self}: the result of workload {w.Name} did not commit ({(_driver.IsLeader ? "not within 5 s" : "no longer leader")}); " +
                         "whoever leads runs it again");
    }

    private void WriteJson()
    {
        if (_jsonPath is null) return;
        string all;
        lock (_stateLock) all = $"{{\"node\":{_self},\"results\":[{string.Join(",", _committedResults)}]}}";
        File.WriteAllText(_jsonPath + ".tmp", all + "\n");
        File.Move(_jsonPath + ".tmp", _jsonPath, overwrite: true);   // whoever waits for the file sees it whole
        WriteHops();
        Emit($"WROTE {_jsonPath}");
    }

    /// <summary>--hops-json: this node's hand-off timestamps of the sampled entries (see CommitHops), in microseconds
    /// of the host's monotonic clock: {"node", "stages": [...], "entries": [[index, ackFrom, us...], ...]}.</summary>
    private void WriteHops()
    {
        if (_hopsPath is null || _driver.Hops is not { } hops) return;
        using var ms = new MemoryStream();
        using (var j = new Utf8JsonWriter(ms))
        {
            j.WriteStartObject();
            j.WriteNumber("node", _self);
            j.WriteStartArray("stages");
            foreach (var s in Enum.GetNames<CommitHops.Stage>()) j.WriteStringValue(s);
            j.WriteEndArray();
            j.WriteStartArray("entries");
            foreach (var (index, ackFrom, ticks) in hops.Snapshot())
            {
                j.WriteStartArray();
                j.WriteNumberValue(index);
                j.WriteNumberValue(ackFrom);
                foreach (long t in ticks) j.WriteNumberValue(t == 0 ? 0 : Math.Round(t * CommitHops.MicrosecondsPerTick, 3));
                j.WriteEndArray();
            }
            j.WriteEndArray();
            j.WriteEndObject();
        }
        File.WriteAllBytes(_hopsPath + ".tmp", ms.ToArray());
        File.Move(_hopsPath + ".tmp", _hopsPath, overwrite: true);
    }

    // Barrier inputs (workload 0, client 0): a workload starts only once one of them committed in our ballot,
    // so it never measures an election or a leader that cannot reach a majority yet.
    private readonly SemaphoreSlim _barrier = new(0);
    private long _barrierSeq;
    private string _waitingFor = "";

    /// <summary>
    /// True when this node leads, hears both other nodes (a cluster missing one would measure something else)
    /// and a barrier input committed in its ballot (within 1 s).
    /// </summary>
    private bool ReadyToMeasure()
    {
        if (!_driver.IsLeader) return false;
        var silent = _host.Transport.Peers.Where(p => _driver.SilenceMs(p) is < 0 or > 100).ToList();
        string waiting = silent.Count == 0 ? "" : $"leading, but no answer from node {string.Join(" and node ", silent)} for 100 ms: waiting";
        if (waiting != _waitingFor && waiting != "") NodeHost.Log($"bench-node {_self}: {waiting}");
        _waitingFor = waiting;
        if (silent.Count > 0) return false;
        while (_barrier.CurrentCount > 0) _barrier.Wait(0);   // stale releases
        var payload = new byte[BenchInput.HeaderSize];
        BenchInput.Write(payload, _self, 0, 0, Interlocked.Increment(ref _barrierSeq), Stopwatch.GetTimestamp());
        if (!_driver.Propose(EntryType.Input, payload)) { Interlocked.Decrement(ref _barrierSeq); return false; }
        // Not committed in time: leadership was lost, or an earlier barrier will be recovered by a new leader.
        // Our order check expects consecutive barrier numbers only from committed barriers; a lost one leaves a gap.
        return _barrier.Wait(1000) && _driver.IsLeader;
    }

    private sealed class ActiveWorkload(int id, BenchWorkload w)
    {
        public readonly int Id = id;
        public readonly SemaphoreSlim[] Windows = Enumerable.Range(0, w.Clients).Select(_ => new SemaphoreSlim(w.Window, w.Window)).ToArray();
        public readonly LatencyRecorder Latency = new(w.Count);
        public readonly ManualResetEventSlim Done = new();
        public long Committed;
        public long LastCommit;
        public long FirstIndex, LastIndex;   // the log indices its inputs took

        public void OnCommitted(int workload, int client, long latency, long now, long index)
        {
            if (workload != Id || (uint)client >= (uint)Windows.Length) return;
            if (FirstIndex == 0) FirstIndex = index;
            LastIndex = index;
            Latency.Add(latency);
            Windows[client].Release();
            if (Interlocked.Increment(ref Committed) == Latency.Capacity)
            {
                LastCommit = now;
                Done.Set();
            }
        }
    }

    private (string Json, string? Error) RunConsensus(BenchWorkload w, int id)
    {
        var active = new ActiveWorkload(id, w);
        _active = active;
        string? error = null;
        long start = Stopwatch.GetTimestamp();
        var ballot = _driver.Ballot;
        var clients = Enumerable.Range(0, w.Clients).Select(c => new Thread(() =>
        {
            int share = w.Count / w.Clients + (c < w.Count % w.Clients ? 1 : 0);
            var payload = new byte[w.Size];
            for (long seq = 1; seq <= share && error is null; seq++)
            {
                // Proposals in flight when the ballot changes may be lost: stop rather than wait for them. (A timestamp,
                // not a Stopwatch: nothing per input is allocated here, so the GC figures are Plover's.)
                long waitFrom = Stopwatch.GetTimestamp();
                while (!active.Windows[c].Wait(50))
                {
                    if (_driver.Ballot != ballot || !_driver.IsLeader) { error ??= $"lost leadership (ballot {ballot} -> {_driver.Ballot})"; return; }
                    if (Stopwatch.GetElapsedTime(waitFrom).TotalSeconds > 10) { error ??= $"no commit for 10 s (client {c}, seq {seq})"; return; }
                }
                BenchInput.Write(payload, _self, id, c, seq, Stopwatch.GetTimestamp());
                while (!_driver.Propose(EntryType.Input, payload))
                {
                    if (!_driver.IsLeader) { error ??= "lost leadership"; return; }
                    Thread.Yield();
                }
            }
        }) { IsBackground = true, Name = $"bench-client-{c}" }).ToList();
        var gc = GcWindow.Start();
        foreach (var t in clients) t.Start();
        foreach (var t in clients) t.Join();
        var tail = Stopwatch.StartNew();
        while (error is null && !active.Done.Wait(50))
        {
            if (_driver.Ballot != ballot) error = $"lost leadership (ballot {ballot} -> {_driver.Ballot})";
            else if (tail.ElapsedMilliseconds > 30_000) error = "not every input committed within 30 s";
        }
        _active = null;
        if (error is not null) Interlocked.Increment(ref _workloadsFailed);
        long end = active.LastCommit != 0 ? active.LastCommit : Stopwatch.GetTimestamp();
        return (ResultJson(w, active.Latency, (end - start) / (double)Stopwatch.Frequency, error, (active.FirstIndex, active.LastIndex), gc), error);
    }

    // Transport round trip: same framing and MAC, answered by the peer's reader thread, no consensus.
    private readonly SemaphoreSlim _pong = new(0);
    private ulong _pingId;
    private long _pingRtt;

    private void OnPong(int peer, in Frame frame)
    {
        long now = Stopwatch.GetTimestamp();
        _pongParsed.Id = 0;
        _pongParsed.SentNs = 0;
        _pongParsed.MergeFrom(frame.Header);
        if (_pongParsed.Id != Volatile.Read(ref _pingId)) return;   // a late answer to an abandoned ping
        _pingRtt = now - _pongParsed.SentNs;
        _pong.Release();
    }

    private sealed class PingBody(int tail) : IFrameBody
    {
        public readonly Ping Message = new();
        public FrameType Type => FrameType.Ping;
        public int Length => FrameBody.Size(Message.CalculateSize(), tail);
        public void Write(Span<byte> destination)
        {
            int h = Message.CalculateSize();
            FrameBody.WriteHeaderLength(destination, h);
            Message.WriteTo(destination.Slice(4, h));
            destination[(4 + h)..].Clear();
        }
    }

    private (string Json, string? Error) RunPing(BenchWorkload w)
    {
        int peer = OtherReplica();
        var latency = new LatencyRecorder(w.Count);
        var body = new PingBody(Math.Max(0, w.Size - 16));
        string? error = null;
        var gc = GcWindow.Start();
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < w.Count; i++)
        {
            Volatile.Write(ref _pingId, (ulong)i + 1);
            body.Message.Id = (ulong)i + 1;
            body.Message.SentNs = Stopwatch.GetTimestamp();
            if (!_host.Transport.Send(peer, body)) { error = $"node {peer} is not connected"; break; }
            _host.Transport.Flush(peer);
            if (!_pong.Wait(5000)) { error = $"no pong from node {peer} within 5 s"; break; }
            latency.Add(_pingRtt);
        }
        if (error is not null) Interlocked.Increment(ref _workloadsFailed);
        return (ResultJson(w, latency, (Stopwatch.GetTimestamp() - start) / (double)Stopwatch.Frequency, error, default, gc), error);
    }

    private string ResultJson(BenchWorkload w, LatencyRecorder latency, double seconds, string? error, (long First, long Last) indices = default,
                              GcWindow? gc = null)
    {
        var (p50, p99, p999, max, mean) = latency.Summary();
        using var ms = new MemoryStream();
        using (var j = new Utf8JsonWriter(ms))
        {
            j.WriteStartObject();
            j.WriteString("name", w.Name);
            j.WriteNumber("node", _self);
            j.WriteString("kind", w.Kind);
            j.WriteNumber("size", w.Size);
            j.WriteNumber("clients", w.Clients);
            j.WriteNumber("window", w.Window);
            j.WriteNumber("count", w.Count);
            j.WriteNumber("completed", latency.Count);
            j.WriteNumber("seconds", Math.Round(seconds, 6));
            j.WriteNumber("per_second", seconds > 0 ? Math.Round(latency.Count / seconds, 1) : 0);
            j.WriteNumber("p50_us", Math.Round(p50, 2));
            j.WriteNumber("p99_us", Math.Round(p99, 2));
            j.WriteNumber("p999_us", Math.Round(p999, 2));
            j.WriteNumber("max_us", Math.Round(max, 2));
            j.WriteNumber("mean_us", Math.Round(mean, 2));
            // The distribution for a CDF plot: "q" the quantiles, "us" the latency at each (parallel arrays).
            var cdf = latency.Cdf();
            if (cdf.Length > 0)
            {
                j.WriteStartObject("cdf");
                j.WriteStartArray("q");
                foreach (var (q, _) in cdf) j.WriteNumberValue(q);
                j.WriteEndArray();
                j.WriteStartArray("us");
                foreach (var (_, us) in cdf) j.WriteNumberValue(Math.Round(us, 2));
                j.WriteEndArray();
                j.WriteEndObject();
            }
            if (indices.First > 0)
            {
                j.WriteNumber("first_index", indices.First);
                j.WriteNumber("last_index", indices.Last);
            }
            gc?.Write(j);
            if (error is not null) j.WriteString("error", error);
            j.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
