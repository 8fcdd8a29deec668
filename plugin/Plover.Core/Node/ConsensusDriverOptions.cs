using Plover.Config;
using Plover.Consensus;

namespace Plover.Node;

/// <summary>How a <see cref="ConsensusDriver"/> maps the core's logical ticks to time, plus its limits.</summary>
public sealed class ConsensusDriverOptions
{
    public required ConsensusConfig Consensus { get; init; }
    /// <summary>Length of one core tick in milliseconds (the heartbeat granularity).</summary>
    public double TickMs { get; init; } = 1;
    /// <summary>Proposals waiting for the consensus thread beyond this many bytes are refused (backpressure).</summary>
    public int MaxQueuedProposalBytes { get; init; } = 64 << 20;
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
            // Resend after a few heartbeats without progress: long enough for a loaded peer, short next to an election.
            RetransmitTicks = Math.Max(2, Math.Min(electionMin / 2, Ticks(4))),
        };
        consensus.Validate();
        return new ConsensusDriverOptions { Consensus = consensus, TickMs = tickMs, Log = log ?? (_ => { }) };
    }
}
