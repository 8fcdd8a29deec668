using Plover.Config;
using Plover.Consensus;

namespace Plover.Node;

/// <summary>How a <see cref="ConsensusDriver"/> maps the core's logical ticks to time, plus its limits.</summary>
public sealed record ConsensusDriverOptions
{
    public required ConsensusConfig Consensus { get; init; }
    /// <summary>Length of one core tick in milliseconds (the heartbeat granularity).</summary>
    public double TickMs { get; init; } = 1;
    /// <summary>Proposals waiting for the consensus thread beyond this many bytes are refused (backpressure).</summary>
    public int MaxQueuedProposalBytes { get; init; } = 64 << 20;
    /// <summary>
    /// Let the thread that delivers a message or a proposal run the core when it is free, instead of waking the
    /// consensus thread (see <see cref="ConsensusDriver"/>). Off (the default): everything runs on the consensus
    /// thread. Measured on the 2-core shared host (3 processes, loopback): p50 commit latency 125 us inline against
    /// 137 us off, within the noise, while the consensus thread waited up to 250 ms behind readers holding the core
    /// through large batches and elections followed; so it stays off until measured on a quieter host.
    /// </summary>
    public bool InlineProcessing { get; init; }
    /// <summary>Record the commit path's hand-offs of every n-th log index (<see cref="CommitHops"/>, for benchmarks);
    /// 0: off.</summary>
    public int TraceHopsEvery { get; init; }
    /// <summary>Null: a fresh cluster (the configured primary leads ballot 1). Otherwise the state to resume from,
    /// <see cref="DurableState.Empty"/> for a node that joins a running cluster with no memory of it.</summary>
    public DurableState? Restored { get; init; }
    /// <summary>Seed of the election timer's randomness (null: random).</summary>
    public int? Seed { get; init; }
    public Action<string> Log { get; init; } = _ => { };

    /// <summary>
    /// Options for node selfId of a cluster config: members (the witness cannot lead), the configured primary as
    /// the initial leader, and timers converted to ticks. A tick is 1 ms, or the heartbeat if that is shorter.
    /// </summary>
    public static ConsensusDriverOptions FromConfig(ClusterConfig config, int selfId, Action<string>? log = null)
    {
        var self = config.Node(selfId);
        var t = config.Timeouts;
        double tickMs = Math.Min(1.0, t.HeartbeatMs);
        int Ticks(double ms) => Math.Max(1, (int)Math.Round(ms / tickMs));
        int heartbeat = Ticks(t.HeartbeatMs);
        int electionMin = Math.Max(heartbeat + 1, Ticks(t.ElectionMinMs));
        int electionMax = Math.Max(electionMin, Ticks(t.ElectionMaxMs));
        var consensus = new ConsensusConfig
        {
            SelfId = self.Id,
            Members = config.Nodes.Select(n => new ConsensusMember(n.Id, n.Role != NodeRole.Witness)).ToArray(),
            InitialLeaderId = config.NodeWithRole(NodeRole.Primary).Id,
            HeartbeatTicks = heartbeat,
            ElectionMinTicks = electionMin,
            ElectionMaxTicks = electionMax,
            // TCP loses nothing while a connection lasts, so a resend only repairs what a reconnection dropped.
            // A short timer would resend the whole pipelining window to a follower that is merely busy, and that
            // storm (megabytes per follower every few ms) delays the heartbeat replies until the leader loses
            // quorum: observed at 4 ms with 4096 proposals in flight on a loaded host.
            RetransmitTicks = electionMin,
            // Bound what sits in a follower's TCP queue ahead of a heartbeat (head-of-line blocking): at most
            // 1024 entries / 256 KiB per Accept, 1024 entries in flight. A round trip of 200 us still allows
            // millions of entries per second; 8192 x 1500-byte inputs queued made heartbeats wait long enough
            // for the leader to lose quorum on a loaded host.
            MaxBatchEntries = 256,
            MaxBatchBytes = 256 << 10,
            MaxInflightEntries = 1024,
        };
        consensus.Validate();
        // PLOVER_CONSENSUS_INLINE=1: an experiment switch for benchmarks (bench consensus compares both), not a setting.
        bool inline = Environment.GetEnvironmentVariable("PLOVER_CONSENSUS_INLINE") == "1";
        return new ConsensusDriverOptions { Consensus = consensus, TickMs = tickMs, Log = log ?? (_ => { }), InlineProcessing = inline };
    }
}
