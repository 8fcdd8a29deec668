namespace Plover.Consensus;

public enum ConsensusRole : byte { Follower, PreCandidate, Candidate, Leader }

public enum FenceReason : byte
{
    /// <summary>Another node holds a higher ballot: a new leader exists or is being elected.</summary>
    HigherBallot,
    /// <summary>The leader heard from no majority for an election timeout, so it could be replaced unseen.</summary>
    LostQuorum,
}

/// <summary>The node's role, ballot and known leader (0 = unknown) after a change.</summary>
public readonly record struct StateChange(ConsensusRole Role, Ballot Ballot, int LeaderId);

/// <summary>This node led in <see cref="Ballot"/> and no longer does: it must stop releasing output for good.</summary>
public readonly record struct Fence(Ballot Ballot, FenceReason Reason);

/// <summary>The entries this follower needs are compacted at the leader: install a VM snapshot covering Index.</summary>
public readonly record struct SnapshotNeeded(int LeaderId, long Index);

/// <summary>
/// Output of a <see cref="ConsensusNode"/> since the last <see cref="ConsensusNode.Advance"/> (like raft's Ready).
/// The caller sends <see cref="Messages"/>, applies <see cref="CommittedEntries"/> in order, reacts to the rest,
/// then calls Advance. The lists, and the entries the messages carry, are reused after Advance: do not keep
/// references to them (<see cref="Message.Detach"/> copies a message's entries).
/// </summary>
public sealed class Ready
{
    // The entries of every Accept in Messages, back to back: lent to the messages until Advance, so a batch costs no array.
    private LogEntry[] _entries = [];
    private int _entryCount;

    public List<Message> Messages { get; } = new();
    /// <summary>Newly committed entries, contiguous and in index order.</summary>
    public List<LogEntry> CommittedEntries { get; } = new();
    /// <summary>Latest role/ballot/leader, if any of them changed.</summary>
    public StateChange? Change { get; internal set; }
    /// <summary>Set when this node stopped being leader. Once fenced in a ballot, a node never commits or proposes in it again.</summary>
    public Fence? Fenced { get; internal set; }
    public SnapshotNeeded? Snapshot { get; internal set; }
    /// <summary>
    /// Witness only: it skipped to the leader's compaction point by itself (it has no VM state to transfer), so
    /// entries up to this index will never appear in <see cref="CommittedEntries"/>.
    /// </summary>
    public long? SnapshotInstalled { get; internal set; }
    /// <summary>
    /// A node restarted without memory rebuilt its state and votes again. Entries up to this index are covered by
    /// the others' snapshots and will never appear in <see cref="CommittedEntries"/> (a VM node takes a full sync).
    /// </summary>
    public long? Recovered { get; internal set; }

    public bool IsEmpty => Messages.Count == 0 && CommittedEntries.Count == 0 && Change is null && Fenced is null && Snapshot is null && SnapshotInstalled is null && Recovered is null;

    /// <summary>A copy of entries that the messages of this Ready may carry (valid until Advance).</summary>
    internal ReadOnlyMemory<LogEntry> Lend(ReadOnlySpan<LogEntry> entries)
    {
        if (_entries.Length - _entryCount < entries.Length)
        {
            // A bigger buffer from here on; the messages built so far keep the old one.
            _entries = new LogEntry[Math.Max(64, Math.Max(2 * _entries.Length, entries.Length))];
            _entryCount = 0;
        }
        var lent = _entries.AsMemory(_entryCount, entries.Length);
        entries.CopyTo(lent.Span);
        _entryCount += entries.Length;
        return lent;
    }

    internal void Clear()
    {
        Array.Clear(_entries, 0, _entryCount);   // the payloads they point at may go
        _entryCount = 0;
        Messages.Clear();
        CommittedEntries.Clear();
        Change = null;
        Fenced = null;
        Snapshot = null;
        SnapshotInstalled = null;
        Recovered = null;
    }
}
