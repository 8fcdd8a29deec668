using System.Net;
using Plover.Config;
using Plover.Node;
using Plover.Sync;
using Prometheus;

namespace Plover.Metrics;

/// <summary>
/// The Prometheus metrics of one node (a replica in QEMU, or the witness), all named <c>plover_*</c>: a
/// prometheus-net registry whose collectors are set from the node's own counters when a scrape comes (a
/// before-collect callback). Nothing is recorded for them on any hot path: the figures are the ones the admin
/// socket and <c>plover status</c> show (<see cref="WireTraffic"/>, <see cref="LatencyHistogram"/>, the sync
/// engine's <see cref="SyncMetrics"/>, the replica's and driver's counters). The names are listed in README.md.
/// </summary>
public sealed class NodeMetrics
{
    /// <summary>Histogram buckets (seconds) for the commit latency: 50 us to 2.5 s.</summary>
    public static readonly double[] LatencyBuckets =
        [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
    /// <summary>Histogram buckets (seconds) for sync pauses and durations: 100 us to 30 s.</summary>
    public static readonly double[] SyncBuckets =
        [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    private static readonly string[] ReplicaRoles = ["starting", "primary", "backup", "joining"];
    private static readonly string[] WitnessRoles = ["starting", "witness"];

    private readonly Lock _lock = new();   // one update at a time (the histogram exports keep what they exported)

    private NodeMetrics(ClusterConfig config, NodeConfig self)
    {
        Registry = Prometheus.Metrics.NewCustomRegistry();
        Factory = Prometheus.Metrics.WithCustomRegistry(Registry);
        Factory.CreateGauge("plover_node_info", "This node: its cluster, id and role in the cluster configuration (always 1).",
            "cluster", "node", "config_role").WithLabels(config.Cluster, self.Id.ToString(), self.Role.Name()).Set(1);
    }

    /// <summary>The registry the endpoint serves.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary>For a host's own collectors (set them in a callback given to <see cref="OnScrape"/>).</summary>
    public MetricFactory Factory { get; }

    /// <summary>Runs update at every scrape, before the metrics are written (on the endpoint's thread).</summary>
    public void OnScrape(Action update) => Registry.AddBeforeCollectCallback(() =>
    {
        lock (_lock) update();
    });

    /// <summary>Starts serving GET /metrics at <paramref name="at"/> (SocketException when it cannot bind).</summary>
    public PrometheusEndpoint Serve(IPEndPoint at, Action<string> log) => PrometheusEndpoint.Start(at, Registry, log);

    /// <summary>A replica's metrics. node may return null (the replica does not exist yet: role "starting").</summary>
    public static NodeMetrics ForReplica(ClusterConfig config, NodeConfig self, Func<ReplicaNode?> node)
    {
        var metrics = new NodeMetrics(config, self);
        var consensus = new ConsensusCollectors(metrics.Factory, ReplicaRoles);
        var replica = new ReplicaCollectors(metrics.Factory);
        var disks = new DiskSyncCollectors(metrics.Factory);
        metrics.OnScrape(() =>
        {
            ReplicaNode? n = node();
            var status = n?.Status();
            consensus.Update(status?.Role ?? "starting", n?.Driver, n?.Traffic);
            replica.Update(n, status);
            disks.Update(n?.Replica?.Engine.Metrics);
        });
        return metrics;
    }

    /// <summary>The witness's metrics.</summary>
    public static NodeMetrics ForWitness(ClusterConfig config, WitnessNode witness)
    {
        var metrics = new NodeMetrics(config, witness.Self);
        var consensus = new ConsensusCollectors(metrics.Factory, WitnessRoles);
        var f = metrics.Factory;
        var committed = f.CreateCounter("plover_committed_entries_total", "Log entries this node applied (committed).");
        var inputs = f.CreateCounter("plover_committed_inputs_total", "INPUT entries among the committed entries.");
        metrics.OnScrape(() =>
        {
            var d = witness.Driver;
            consensus.Update(d is null ? "starting" : "witness", d, witness.Transport.Traffic);
            committed.IncTo(witness.Committed);
            inputs.IncTo(witness.Inputs);
        });
        return metrics;
    }

    /// <summary>What every node has: role, consensus state and every frame on the wire.</summary>
    private sealed class ConsensusCollectors
    {
        private static readonly string[] ConsensusRoles = ["follower", "precandidate", "candidate", "leader", "recovering"];
        private readonly string[] _roles;
        private readonly Gauge _role, _consensusRole, _term, _leader, _commitIndex, _lastIndex;
        private readonly Counter _sent, _received, _dropped, _sentBytes, _receivedBytes, _sentFrames, _receivedFrames;

        public ConsensusCollectors(MetricFactory f, string[] roles)
        {
            _roles = roles;
            _role = f.CreateGauge("plover_role", "1 for this node's role now (starting, primary, backup, joining; witness), 0 for the others.", "role");
            _consensusRole = f.CreateGauge("plover_consensus_role", "1 for this node's consensus role now (follower, precandidate, candidate, leader, recovering).", "role");
            _term = f.CreateGauge("plover_term", "The consensus term (the round of the ballot this node is in).");
            _leader = f.CreateGauge("plover_leader_id", "The node id of the consensus leader this node knows (0: none).");
            _commitIndex = f.CreateGauge("plover_commit_index", "The highest committed log index this node knows.");
            _lastIndex = f.CreateGauge("plover_last_index", "The highest log index this node holds.");
            _sent = f.CreateCounter("plover_consensus_messages_sent_total", "Consensus messages this node sent.");
            _received = f.CreateCounter("plover_consensus_messages_received_total", "Consensus messages this node received.");
            _dropped = f.CreateCounter("plover_consensus_messages_dropped_total", "Consensus messages this node could not send (no connection).");
            string[] wire = ["channel", "kind"];
            _sentBytes = f.CreateCounter("plover_wire_sent_bytes_total", "Bytes this node sent, whole frames (header, body, MAC), by channel (consensus, synclink, observer) and kind of message.", wire);
            _receivedBytes = f.CreateCounter("plover_wire_received_bytes_total", "Bytes this node received, whole frames, by channel and kind of message.", wire);
            _sentFrames = f.CreateCounter("plover_wire_sent_frames_total", "Frames this node sent, by channel and kind of message.", wire);
            _receivedFrames = f.CreateCounter("plover_wire_received_frames_total", "Frames this node received, by channel and kind of message.", wire);
            foreach (string r in roles) _role.WithLabels(r).Set(0);
            foreach (string r in ConsensusRoles) _consensusRole.WithLabels(r).Set(0);
        }

        public void Update(string role, ConsensusDriver? d, WireTraffic? traffic)
        {
            foreach (string r in _roles) _role.WithLabels(r).Set(r == role ? 1 : 0);
            if (Array.IndexOf(_roles, role) < 0) _role.WithLabels(role).Set(1);
            string consensusRole = d?.RoleName ?? "";
            foreach (string r in ConsensusRoles) _consensusRole.WithLabels(r).Set(r == consensusRole ? 1 : 0);
            if (d is not null)
            {
                _term.Set(d.Term);
                _leader.Set(d.LeaderId);
                _commitIndex.Set(d.CommitIndex);
                _lastIndex.Set(d.LastIndex);
                _sent.IncTo(d.MessagesSent);
                _received.IncTo(d.MessagesReceived);
                _dropped.IncTo(d.MessagesDropped);
            }
            if (traffic is null) return;
            foreach (WireCount row in traffic.Snapshot())
            {
                string channel = row.Channel.ToString().ToLowerInvariant(), kind = row.Kind.ToString().ToLowerInvariant();
                _sentBytes.WithLabels(channel, kind).IncTo(row.SentBytes);
                _receivedBytes.WithLabels(channel, kind).IncTo(row.ReceivedBytes);
                _sentFrames.WithLabels(channel, kind).IncTo(row.SentFrames);
                _receivedFrames.WithLabels(channel, kind).IncTo(row.ReceivedFrames);
            }
        }
    }

    /// <summary>What a replica has besides: protection, syncs, inputs, output.</summary>
    private sealed class ReplicaCollectors
    {
        private readonly Gauge _protected, _fenced, _runsAlone, _syncLink, _identical, _lastEpoch, _lastSync, _pendingEpochs;
        private readonly Counter _syncs, _union, _identicalPages, _divergent, _triggers, _roleChanges;
        private readonly Counter _proposed, _stolen, _injected, _framesInjected, _framesDropped, _injectFailures, _inputDivergences;
        private readonly Counter _released, _discarded;
        private readonly HistogramExport _guestPause, _duration, _commitLatency;
        private readonly long[] _pauseCounts = new long[LatencyHistogram.BucketCount];
        private readonly long[] _durationCounts = new long[LatencyHistogram.BucketCount];
        private readonly long[] _latencyCounts = new long[LatencyHistogram.BucketCount];

        public ReplicaCollectors(MetricFactory f)
        {
            _protected = f.CreateGauge("plover_protected", "1 when this node is the primary and its output is protected: held until a connected backup applied the sync that covers it.");
            _fenced = f.CreateGauge("plover_fenced", "1 when this node was deposed as primary and rejoins as backup.");
            _runsAlone = f.CreateGauge("plover_runs_alone", "1 when this node is a primary running without a backup (unprotected).");
            _syncLink = f.CreateGauge("plover_sync_link_up", "1 when the sync link to the other replica is connected.");
            _syncs = f.CreateCounter("plover_syncs_total", "Syncs this side ran, by outcome (completed, aborted).", "outcome");
            _guestPause = new HistogramExport(f.CreateHistogram("plover_sync_guest_pause_seconds",
                "How long this side's guest stood still for each sync (the pause its clients feel; less than the sync when the primary resumed early).",
                new HistogramConfiguration { Buckets = SyncBuckets }));
            _duration = new HistogramExport(f.CreateHistogram("plover_sync_duration_seconds",
                "Each sync from the stop request to its end (ack received, output released).", new HistogramConfiguration { Buckets = SyncBuckets }));
            _union = f.CreateCounter("plover_sync_union_pages_total", "Pages in the union of both dirty bitmaps, summed over the syncs.");
            _identicalPages = f.CreateCounter("plover_sync_identical_pages_total", "Union pages whose hashes matched on both replicas (not sent).");
            _divergent = f.CreateCounter("plover_sync_divergent_pages_total", "Union pages that differed and were sent.");
            _identical = f.CreateGauge("plover_sync_identical_percent", "Identical pages as a percentage of the union pages, over every sync so far (100 * rate(identical) / rate(union) for a window).");
            _lastEpoch = f.CreateGauge("plover_last_sync_epoch", "The epoch of the last completed sync.");
            _lastSync = f.CreateGauge("plover_last_sync_timestamp_seconds", "When the last completed sync started (Unix time).");
            _triggers = f.CreateCounter("plover_sync_triggers_total", "What made the primary propose a sync (idle, max_epoch), or not (nothing_new, refused).", "trigger");
            _commitLatency = new HistogramExport(f.CreateHistogram("plover_commit_latency_seconds",
                "Primary: from proposing an INPUT entry to its commit (exported from the replica's log-linear histogram, values within 3%).",
                new HistogramConfiguration { Buckets = LatencyBuckets }));
            _proposed = f.CreateCounter("plover_inputs_proposed_total", "INPUT entries (batches of frames) this primary proposed.");
            _stolen = f.CreateCounter("plover_input_frames_stolen_total", "Frames to the guest this primary took from its NICs to propose.");
            _injected = f.CreateCounter("plover_inputs_injected_total", "Committed INPUT entries injected into this node's guest.");
            _framesInjected = f.CreateCounter("plover_input_frames_injected_total", "Frames injected into this node's guest from committed entries.");
            _framesDropped = f.CreateCounter("plover_input_frames_dropped_total", "Frames to the guest dropped: a backup's own, or a primary's beyond its pending limit.");
            _injectFailures = f.CreateCounter("plover_input_inject_failures_total", "Frames the host failed to inject into the guest.");
            _inputDivergences = f.CreateCounter("plover_input_divergences_total", "Backup: syncs at which the primary's input digest was not this replica's.");
            _released = f.CreateCounter("plover_output_frames_released_total", "Frames from the guest let out (primary).");
            _discarded = f.CreateCounter("plover_output_frames_discarded_total", "Frames from the guest discarded (a backup's output, a deposed primary's).");
            _pendingEpochs = f.CreateGauge("plover_output_pending_epochs", "Epochs whose held output waits for its sync.");
            _roleChanges = f.CreateCounter("plover_role_changes_total", "Role changes of this replica (promotion, demotion, join).", "change");
            _syncs.WithLabels("completed");
            _syncs.WithLabels("aborted");
        }

        public void Update(ReplicaNode? node, Wire.NodeStatus? status)
        {
            Replica? r = node?.Replica;
            _protected.Set(status?.Protected == true ? 1 : 0);
            _fenced.Set(r?.IsFenced == true ? 1 : 0);
            _runsAlone.Set(r?.RunsAlone == true ? 1 : 0);
            _syncLink.Set(node?.SyncLinkConnected == true ? 1 : 0);
            if (r is null) return;

            SyncTotals totals = r.Engine.Metrics.Snapshot(_pauseCounts, _durationCounts);
            _syncs.WithLabels("completed").IncTo(totals.Completed);
            _syncs.WithLabels("aborted").IncTo(totals.Aborted);
            _guestPause.Update(_pauseCounts);
            _duration.Update(_durationCounts);
            _union.IncTo(totals.UnionPages);
            _identicalPages.IncTo(totals.IdenticalPages);
            _divergent.IncTo(totals.DivergentPages);
            _identical.Set(totals.UnionPages == 0 ? 0 : 100.0 * totals.IdenticalPages / totals.UnionPages);
            _lastEpoch.Set(r.LastSyncEpoch);
            if (r.Engine.Metrics.LastCompleted is { } last)
                _lastSync.Set((last.StartedUtc - DateTime.UnixEpoch).TotalSeconds);
            var triggers = r.SyncTriggers;
            _triggers.WithLabels("idle").IncTo(triggers.Idle);
            _triggers.WithLabels("max_epoch").IncTo(triggers.MaxEpoch);
            _triggers.WithLabels("nothing_new").IncTo(triggers.NothingNew);
            _triggers.WithLabels("refused").IncTo(triggers.Refused);

            r.CommitLatency.CopyCounts(_latencyCounts);
            _commitLatency.Update(_latencyCounts);
            _proposed.IncTo(r.EntriesProposed);
            _stolen.IncTo(r.FramesStolen);
            _injected.IncTo(r.InputsInjected);
            _framesInjected.IncTo(r.FramesInjected);
            _framesDropped.IncTo(r.FramesDropped);
            _injectFailures.IncTo(r.InjectFailures);
            _inputDivergences.IncTo(r.InputDivergences);
            _released.IncTo(r.Guard.FramesReleased);
            _discarded.IncTo(r.Guard.FramesDiscarded);
            _pendingEpochs.Set(r.Guard.PendingEpochs);
            var changes = r.RoleChanges;
            _roleChanges.WithLabels("promotion").IncTo(changes.Promotions);
            _roleChanges.WithLabels("demotion").IncTo(changes.Demotions);
            _roleChanges.WithLabels("join").IncTo(changes.Joins);
        }
    }

    /// <summary>
    /// A <see cref="LatencyHistogram"/> exported as a Prometheus histogram: at each scrape the counts that arrived
    /// in each of its buckets since the last one are observed at the bucket's midpoint (so a value sits in the
    /// Prometheus bucket of its log-linear bucket's middle, and the sum is exact to within 3%). A source that was
    /// reset (the admin command metrics-reset) starts over: what it holds then is new.
    /// </summary>
    internal sealed class HistogramExport(Histogram target)
    {
        private readonly long[] _exported = new long[LatencyHistogram.BucketCount];
        private long _exportedTotal;

        public void Update(ReadOnlySpan<long> counts)
        {
            long total = 0;
            foreach (long c in counts) total += c;
            bool reset = total < _exportedTotal;
            for (int i = 0; i < _exported.Length; i++)
            {
                long delta = reset ? counts[i] : counts[i] - _exported[i];
                if (delta > 0) target.Observe(LatencyHistogram.BucketMidpointUs(i) / 1e6, delta);
                _exported[i] = counts[i];
            }
            _exportedTotal = total;
        }
    }
}
