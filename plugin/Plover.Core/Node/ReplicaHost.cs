using Plover.Guard;
using Plover.Sync;

namespace Plover.Node;

/// <summary>
/// Everything a <see cref="Replica"/> needs from the VM host (QEMU: the Host/ adapters over PloverHostApi; tests:
/// synthetic memory, a fake VM and fake NICs). NIC ids are 0..OutputPorts.Count-1 in both directions.
/// </summary>
public interface IReplicaHost
{
    IGuestMemory Memory { get; }
    IVmHost Vm { get; }
    IMainThread Main { get; }
    /// <summary>One output buffer per NIC, indexed by NIC id.</summary>
    IReadOnlyList<IOutputPort> OutputPorts { get; }
    /// <summary>net_inject: deliver one frame into the guest on NIC nic (MAIN thread, VM running). Returns &lt; 0 on failure.</summary>
    int Inject(int nic, ReadOnlySpan<byte> frame);
    /// <summary>net_announce: gratuitous ARP for every NIC after a promotion (MAIN thread).</summary>
    void Announce();
    /// <summary>The replicated drives, synced with the RAM; null: none.</summary>
    IDiskHost? Disks => null;
}
