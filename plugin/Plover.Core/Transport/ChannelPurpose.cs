namespace Plover.Transport;

/// <summary>What a connection is for. Bound into the handshake, so a handshake meant for one port fails on another,
/// and each listener admits only its own: the consensus port consensus (the three nodes) and observer (status,
/// read-only), the sync port sync (the two VM nodes).</summary>
public enum ChannelPurpose
{
    Consensus,
    Sync,
    Observer,
}

public static class ChannelPurposes
{
    public static string Name(this ChannelPurpose purpose) => purpose switch
    {
        ChannelPurpose.Consensus => "consensus",
        ChannelPurpose.Sync => "sync",
        ChannelPurpose.Observer => "observer",
        _ => throw new ArgumentOutOfRangeException(nameof(purpose)),
    };

    public static bool TryParse(string name, out ChannelPurpose purpose)
    {
        foreach (var p in Enum.GetValues<ChannelPurpose>())
            if (p.Name() == name) { purpose = p; return true; }
        purpose = default;
        return false;
    }
}
