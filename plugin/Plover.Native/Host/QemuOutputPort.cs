using Plover.Guard;
using Plover.Interop;

namespace Plover.Native.Host;

/// <summary>IOutputPort for one filter-plover NIC (net_out_*). MAIN thread only, like the guard's other calls.</summary>
internal sealed class QemuOutputPort(QemuHost host, uint nic) : IOutputPort
{
    public uint Nic { get; } = nic;

    public ulong Cut() => host.NetOutCut(Nic);

    public long Release(ulong uptoEpoch) => host.NetOutRelease(Nic, uptoEpoch);   // < 0: the guard logs it

    public long Discard(ulong uptoEpoch) => host.NetOutDiscard(Nic, uptoEpoch);

    public void SetMode(OutputMode mode)
    {
        int rc = host.NetOutMode(Nic, mode == OutputMode.Pass ? PloverAbi.OutPass : PloverAbi.OutHold);
        if (rc < 0) throw new InvalidOperationException($"net_out_mode({Nic}, {mode}) failed: {rc}");
    }
}
