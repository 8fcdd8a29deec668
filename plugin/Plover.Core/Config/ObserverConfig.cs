namespace Plover.Config;

/// <summary>An observer (<c>plover status</c>) allowed to read every node's status, and nothing else.</summary>
public sealed class ObserverConfig(string name, byte[] publicKey)
{
    /// <summary>Unique among the observers; the observer names itself by it in the handshake.</summary>
    public string Name { get; } = name;
    /// <summary>Its P-256 public key (X | Y).</summary>
    public byte[] PublicKey { get; } = publicKey;
}
