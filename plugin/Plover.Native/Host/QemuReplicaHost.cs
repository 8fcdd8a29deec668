using Plover.Guard;
using Plover.Interop;
using Plover.Node;
using Plover.Sync;

namespace Plover.Native.Host;

/// <summary>
/// The Replica's view of QEMU: guest RAM, VM control, the main thread, one output port and one injection path per
/// filter-plover NIC. Built at machine_ready on the main thread (RAM blocks and NICs are fixed from then on).
/// </summary>
internal sealed unsafe class QemuReplicaHost : IReplicaHost
{
    private readonly QemuHost _host;
    private readonly QemuOutputPort[] _ports;
    private byte[] _gather = new byte[64 << 10];   // main thread: a frame's iovec gathered for the Replica
    private long _injectErrors;

    public QemuReplicaHost(QemuHost host, MainThreadDispatcher dispatcher, int node)
    {
        _host = host;
        Memory = new QemuGuestMemory(host);
        Vm = new QemuVmHost(host);
        Main = new QemuMainThread(dispatcher, host);
        if (host.Drives().Length > 0) Disks = new QemuDiskHost(host, node);
        NicInfo[] nics = host.Nics();
        _ports = new QemuOutputPort[nics.Length];
        for (int i = 0; i < nics.Length; i++)
        {
            if (nics[i].Id != i) throw new InvalidOperationException($"nic {i} reports id {nics[i].Id}");
            _ports[i] = new QemuOutputPort(host, (uint)i);
        }
    }

    public IGuestMemory Memory { get; }
    public IVmHost Vm { get; }
    public IMainThread Main { get; }
    public IDiskHost? Disks { get; }
    public IReadOnlyList<IOutputPort> OutputPorts => _ports;
    public long InjectErrors => Interlocked.Read(ref _injectErrors);

    public int Inject(int nic, ReadOnlySpan<byte> frame)
    {
        int rc = _host.NetInject((uint)nic, 0, frame);
        if (rc < 0 && Interlocked.Increment(ref _injectErrors) is 1 or 1000 or 1_000_000)
            _host.Warn($"net_inject on nic {nic} failed: {rc} ({_injectErrors} failures so far)");
        return rc;
    }

    public void Announce()
    {
        int rc = _host.NetAnnounce();
        if (rc < 0) _host.Error($"net_announce failed: {rc}");
    }

    /// <summary>
    /// net_to_guest for a replica (MAIN thread): gathers the frame (QEMU reuses the iovec after return) and hands it
    /// to the replica, which proposes (primary) or drops (backup) it. Returns PLOVER_NET_CONSUMED or _PASS.
    /// </summary>
    public int OnNetToGuest(Replica replica, uint nic, Iovec* iov, int iovcnt)
    {
        if (iovcnt < 0 || (iovcnt > 0 && iov == null))
            throw new ArgumentException($"net_to_guest: bad iovec (iov {(nint)iov}, iovcnt {iovcnt})");
        long total = 0;
        for (int i = 0; i < iovcnt; i++) total += (long)iov[i].iov_len;
        if (total > 1 << 20) throw new ArgumentException($"net_to_guest: {total}-byte frame");
        if (total > _gather.Length) _gather = new byte[Math.Max(total, _gather.Length * 2)];
        int at = 0;
        for (int i = 0; i < iovcnt; i++)
        {
            int len = (int)iov[i].iov_len;
            new ReadOnlySpan<byte>(iov[i].iov_base, len).CopyTo(_gather.AsSpan(at));
            at += len;
        }
        return replica.OnFrameToGuest((int)nic, _gather.AsSpan(0, at)) ? PloverAbi.NetConsumed : PloverAbi.NetPass;
    }
}
