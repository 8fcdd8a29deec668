using Plover.Transport;

namespace Plover.Fuzz;

/// <summary>The fuzz cluster's identities: a P-256 key pair per node (1, 2 primary and backup, 3 witness), made once
/// per process; the targets authenticate as these nodes, as the real ones would.</summary>
public static class FuzzIdentity
{
    private static readonly IdentityKey[] Keys = [IdentityKey.Generate(), IdentityKey.Generate(), IdentityKey.Generate()];
    private static readonly Dictionary<int, byte[]> NodeKeys = new() { [1] = Keys[0].PublicKey, [2] = Keys[1].PublicKey, [3] = Keys[2].PublicKey };
    private static readonly Dictionary<string, byte[]> ObserverKeys = new() { ["ops"] = IdentityKey.Generate().PublicKey };

    public static ClusterIdentity Of(int self) => new("fuzz", self, Keys[self - 1], NodeKeys, ObserverKeys);
}
