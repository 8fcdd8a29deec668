using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Plover.Guard;
using Plover.Sync;
using Xunit;
using Plover.Tests.Guard;
using Plover.Transport;

namespace Plover.Tests.Sync;

/// <summary>A primary and a backup replica in one process: synthetic guest memory, fake VMs with their own main
/// threads, output guards, and sync engines joined by a real authenticated loopback TCP connection.</summary>
public sealed class SyncPair : IDisposable
{
    private readonly Socket _listener;

    private readonly Plover.Transport.Ucx.UcxWorker? _primaryUcx, _backupUcx;

    /// <param name="ucx">Join the engines over UCX (one worker each) instead of TCP.</param>
    public SyncPair((string Name, ulong Bytes)[] blocks, SyncOptions? primaryOptions = null, SyncOptions? backupOptions = null, int seed = 1,
                    Plover.Transport.Ucx.UcxSettings? ucx = null, (string Name, ulong Size)[]? drives = null)
    {
        if (drives is not null)
        {
            // replicated drives, alike on both replicas at the start
            PrimaryDisks = new SyntheticDisks(drives);
            BackupDisks = new SyntheticDisks(drives);
            for (int d = 0; d < drives.Length; d++)
            {
                new Random(seed + 100 + d).NextBytes(PrimaryDisks.Bytes(d));
                PrimaryDisks.Bytes(d).CopyTo(BackupDisks.Bytes(d));
            }
        }
        if (ucx is not null)
        {
            _primaryUcx = new Plover.Transport.Ucx.UcxWorker(ucx, "primary");
            _backupUcx = new Plover.Transport.Ucx.UcxWorker(ucx, "backup");
        }
        PrimaryMemory = new SyntheticGuestMemory(blocks);
        BackupMemory = new SyntheticGuestMemory(blocks);
        PrimaryMemory.FillRandom(seed);
        BackupMemory.CopyFrom(PrimaryMemory);
        PrimaryMain = new DedicatedMainThread("primary-main");
        BackupMain = new DedicatedMainThread("backup-main");
        PrimaryVm = new SyntheticVm(PrimaryMemory, PrimaryMain) { DeviceState = [1, 2, 3] };
        BackupVm = new SyntheticVm(BackupMemory, BackupMain);
        PrimaryGuard = new OutputGuard(GuardRole.Primary, [PrimaryNic], Log);
        BackupGuard = new OutputGuard(GuardRole.Backup, [BackupNic], Log);
        Primary = new SyncEngine(SyncRole.Primary, PrimaryMemory, PrimaryVm, PrimaryMain, PrimaryGuard, primaryOptions ?? new SyncOptions { Log = Log }, PrimaryDisks);
        Backup = new SyncEngine(SyncRole.Backup, BackupMemory, BackupVm, BackupMain, BackupGuard, backupOptions ?? new SyncOptions { Log = Log }, BackupDisks);
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(4);
        Connect();
    }

    public SyntheticDisks? PrimaryDisks { get; }
    public SyntheticDisks? BackupDisks { get; }
    public SyntheticGuestMemory PrimaryMemory { get; }
    public SyntheticGuestMemory BackupMemory { get; }
    public DedicatedMainThread PrimaryMain { get; }
    public DedicatedMainThread BackupMain { get; }
    public SyntheticVm PrimaryVm { get; }
    public SyntheticVm BackupVm { get; }
    public FakeOutputPort PrimaryNic { get; } = new();
    public FakeOutputPort BackupNic { get; } = new();
    public OutputGuard PrimaryGuard { get; }
    public OutputGuard BackupGuard { get; }
    public SyncEngine Primary { get; }
    public SyncEngine Backup { get; }
    public List<string> Logs { get; } = new();

    private void Log(string m) { lock (Logs) Logs.Add(m); }

    public static ClusterIdentity Identity(int self) => Plover.Tests.Transport.TestKeys.Identity(self, [1, 2, 3]);

    /// <summary>(Re)connects the engines: node 1 (primary) dials node 2 (backup).</summary>
    public void Connect()
    {
        var accept = Task.Run(() => SyncConnection.Accept(_listener, Identity(2), 1, TimeSpan.FromSeconds(5), ucx: _backupUcx));
        var dialed = SyncConnection.Connect((IPEndPoint)_listener.LocalEndPoint!, Identity(1), 2, TimeSpan.FromSeconds(5), ucx: _primaryUcx);
        Primary.Connection = dialed;
        Backup.Connection = accept.Result;
    }

    public (SyncStats Primary, SyncStats Backup) Sync(ulong epoch, bool full = false)
    {
        var request = new SyncRequest(epoch, (long)epoch * 100, full);
        var p = Primary.RunAsync(request);
        var b = Backup.RunAsync(request);
        Assert.True(Task.WaitAll([p, b], TimeSpan.FromSeconds(60)), "sync did not finish");
        return (p.Result, b.Result);
    }

    public void Dispose()
    {
        Primary.Dispose();
        Backup.Dispose();
        PrimaryMain.Dispose();
        BackupMain.Dispose();
        PrimaryMemory.Dispose();
        BackupMemory.Dispose();
        _listener.Dispose();
        Primary.Connection?.Dispose();   // the endpoints go before their workers
        Backup.Connection?.Dispose();
        _primaryUcx?.Dispose();
        _backupUcx?.Dispose();
    }
}
