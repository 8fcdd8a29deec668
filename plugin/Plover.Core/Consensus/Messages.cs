namespace Plover.Consensus;

/// <summary>The consensus messages between nodes. The transport maps each to one wire frame.</summary>
public enum MessageType : byte
{
    /// <summary>
    /// Candidate asks whether it could win before disturbing anyone (raft's pre-vote). Ballot = the ballot the
    /// candidate would use; Commit = candidate's commit index. Receivers change no state.
    /// </summary>
    PreVote = 1,
    /// <summary>Answer to PreVote. Ballot = the ballot asked about; Reject = true if refused (a live leader was heard recently).</summary>
    PreVoteReply = 2,
    /// <summary>Phase 1a. Ballot = candidate's new ballot; Index = first log index the candidate wants (its commit + 1).</summary>
    Prepare = 3,
    /// <summary>
    /// Phase 1b. Ballot = the ballot promised; Index = acceptor's first retained log index (its compaction point + 1);
    /// Commit = acceptor's commit index; Entries = every accepted entry from max(requested index, Index), each
    /// with the ballot it was accepted in. Can be large (everything since the candidate's commit index).
    /// </summary>
    Promise = 4,
    /// <summary>
    /// A request was refused because the sender of this Nack promised a higher ballot. Ballot = that higher ballot.
    /// A leader receiving it is fenced.
    /// </summary>
    Nack = 5,
    /// <summary>
    /// Phase 2a and heartbeat. Ballot = leader's ballot; Index = index of Entries[0] (for an empty heartbeat: the
    /// next index the leader would send); Commit = leader's commit index; LogStart = leader's first retained index
    /// (followers that follow the leader's compaction, like the witness, truncate below it); Entries may be empty.
    /// </summary>
    Accept = 6,
    /// <summary>
    /// Phase 2b. Ballot = the ballot accepted in; Index = highest index such that this node's log up to it equals
    /// the leader's (everything accepted in this ballot, plus committed entries); Reject = true when the Accept
    /// could not be applied because of a gap: the leader should resend from Index + 1.
    /// </summary>
    Accepted = 7,
    /// <summary>
    /// Leader tells a follower that the entries it needs are compacted away. Ballot = leader's ballot;
    /// Index = leader's compaction point (the follower needs a VM snapshot at least that recent); Commit = leader commit.
    /// </summary>
    SnapshotRequired = 8,
    /// <summary>
    /// A node that restarted without its consensus memory asks what the others hold (see ConsensusNode.Recovery.cs).
    /// Nonce = a random number fresh for this incarnation; answers carry it back. Ballot = zero (it has none).
    /// </summary>
    RecoveryRequest = 9,
    /// <summary>
    /// Answer to RecoveryRequest from a node that is not recovering itself; changes nothing at the sender.
    /// Ballot = sender's promised ballot; Index = sender's first retained log index; Commit = sender's commit index;
    /// Entries = every entry it holds (from Index on); Nonce = the request's; LeaderId = the leader it knows (0: none).
    /// </summary>
    RecoveryResponse = 10,
}

/// <summary>
/// One consensus message, a value (the same message may be sent, duplicated or retransmitted; building one allocates
/// nothing). Unused fields are zero / empty. See <see cref="MessageType"/> for the meaning of each field per type.
/// <see cref="Entries"/> may be lent: a message in a <see cref="Ready"/> borrows the node's buffer until
/// <see cref="ConsensusNode.Advance"/>, one handed to <see cref="ConsensusNode.Step"/> may borrow the decoder's for
/// the call. Whoever keeps a message longer keeps <see cref="Detach"/>'s copy.
/// </summary>
public readonly struct Message
{
    public required MessageType Type { get; init; }
    public required int From { get; init; }
    public required int To { get; init; }
    public required Ballot Ballot { get; init; }
    public long Index { get; init; }
    public long Commit { get; init; }
    public long LogStart { get; init; }
    public bool Reject { get; init; }
    public ulong Nonce { get; init; }
    public int LeaderId { get; init; }
    public ReadOnlyMemory<LogEntry> Entries { get; init; }

    /// <summary>This message with entries of its own (not lent), to keep it past the call or Ready that lent them.</summary>
    public Message Detach() => Entries.IsEmpty ? this : this with { Entries = Entries.ToArray() };

    public override string ToString() =>
        $"{Type} {From}->{To} b={Ballot} i={Index} c={Commit} ls={LogStart}{(Reject ? " reject" : "")} n={Entries.Length}" +
        (Type is MessageType.RecoveryRequest or MessageType.RecoveryResponse ? $" nonce={Nonce:x} leader={LeaderId}" : "");
}
