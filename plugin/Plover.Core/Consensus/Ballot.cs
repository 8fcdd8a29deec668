namespace Plover.Consensus;

/// <summary>
/// A Paxos ballot: a round number (the "term") and the id of the only node that may lead in it.
/// Embedding the node id makes ballots unique per node, so two nodes can never lead in the same ballot.
/// Ordered by round, then node id.
/// </summary>
public readonly record struct Ballot(long Round, int NodeId) : IComparable<Ballot>
{
    public static readonly Ballot Zero = new(0, 0);

    public int CompareTo(Ballot other)
    {
        int c = Round.CompareTo(other.Round);
        return c != 0 ? c : NodeId.CompareTo(other.NodeId);
    }

    public static bool operator <(Ballot a, Ballot b) => a.CompareTo(b) < 0;
    public static bool operator >(Ballot a, Ballot b) => a.CompareTo(b) > 0;
    public static bool operator <=(Ballot a, Ballot b) => a.CompareTo(b) <= 0;
    public static bool operator >=(Ballot a, Ballot b) => a.CompareTo(b) >= 0;

    public override string ToString() => $"{Round}.{NodeId}";
}
