namespace Plover.Consensus;

/// <summary>What a log entry means to the layers above; the consensus core treats the payload as opaque.</summary>
public enum EntryType : byte
{
    /// <summary>Filler; carries nothing.</summary>
    Noop = 0,
    /// <summary>A batch of inbound frames for one NIC (see <see cref="EntryPayloads.EncodeInput"/>).</summary>
    Input = 1,
    /// <summary>A syncvm cut at this index (payload: epoch number, see <see cref="EntryPayloads.EncodeSync"/>).</summary>
    Sync = 2,
    /// <summary>A new leader's first entry (payload: ballot and new primary id, see <see cref="EntryPayloads.EncodeRole"/>).</summary>
    Role = 3,
}

/// <summary>
/// One slot of the replicated log. <see cref="Ballot"/> is the ballot in which this node accepted the value
/// (a new leader re-proposes recovered values in its own ballot). The payload is immutable once in the log: it is
/// copied exactly once, when proposed or received, and shared afterwards. Under a ConsensusDriver it lives in a slab
/// that is reused once the entry is compacted (Transport.PayloadArena): whoever keeps an entry must be done with its
/// payload by then.
/// </summary>
public readonly record struct LogEntry(long Index, Ballot Ballot, EntryType Type, ReadOnlyMemory<byte> Payload)
{
    public bool SameValue(in LogEntry other) =>
        Index == other.Index && Type == other.Type && Payload.Span.SequenceEqual(other.Payload.Span);
}
