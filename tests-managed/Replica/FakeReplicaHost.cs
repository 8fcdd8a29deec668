using System.Buffers.Binary;
using Plover.Guard;
using Plover.Hashing;
using Plover.Node;
using Plover.Sync;
using Plover.Tests.Guard;

namespace Plover.Tests.Replica;

/// <summary>
/// A VM host for one replica: synthetic memory, a fake VM on its own main thread and one fake NIC. The fake guest
/// handles every injected frame deterministically (writes the frame into a page chosen by the frame's hash and
/// answers with one output frame carrying its sequence number); with <see cref="Diverge"/> it also writes
/// pseudo-random bytes to a random page per frame, as a multi-core guest's timing would. Without <see cref="Record"/>
/// (allocation tests) it only counts what it injects: no copies kept, no answer sent.
/// </summary>
public sealed class FakeReplicaHost : IReplicaHost, IDisposable
{
    private readonly Random _noise;

    public FakeReplicaHost(string name, (string Name, ulong Bytes)[] blocks, int seed, bool diverge, bool record = true)
    {
        Record = record;
        MemoryImpl = new SyntheticGuestMemory(blocks);
        MemoryImpl.FillRandom(1);
        MainImpl = new DedicatedMainThread($"{name}-main");
        VmImpl = new SyntheticVm(MemoryImpl, MainImpl) { DeviceState = [(byte)seed, 2, 3] };
        Diverge = diverge;
        NoisePages = diverge ? 1 : 0;
        _noise = new Random(seed);
    }

    /// <summary>Pages of this guest's own noise (a random word at a random page, from this host's generator) per
    /// injected frame: the two guests diverge by that much.</summary>
    public int NoisePages { get; set; }
    /// <summary>Bytes of noise per noisy page: 8 (a word) or 4096 (the whole page, random).</summary>
    public int NoiseBytes { get; set; } = 8;

    public SyntheticGuestMemory MemoryImpl { get; }
    /// <summary>Replicated drives (none unless a test sets them).</summary>
    public IDiskHost? Disks { get; set; }
    public SyntheticVm VmImpl { get; }
    public DedicatedMainThread MainImpl { get; }
    public FakeOutputPort Nic { get; } = new();
    private IReadOnlyList<IOutputPort>? _ports;
    public bool Diverge { get; }
    public bool Record { get; }
    /// <summary>Frames injected so far.</summary>
    public int InjectedCount => Volatile.Read(ref _injectedCount);
    private int _injectedCount;

    public IGuestMemory Memory => MemoryImpl;
    public IVmHost Vm => VmImpl;
    public IMainThread Main => MainImpl;
    public IReadOnlyList<IOutputPort> OutputPorts => _ports ??= [Nic];   // one list: the replica asks per INPUT entry

    /// <summary>Frames injected, in order (copies).</summary>
    public List<byte[]> Injected { get; } = new();
    /// <summary>Injections that came off the main thread or while the VM was stopped (must stay 0).</summary>
    public int Violations { get; private set; }
    public int Announces { get; private set; }

    public byte[][] InjectedSnapshot() { lock (Injected) return Injected.ToArray(); }

    public int Inject(int nic, ReadOnlySpan<byte> frame)
    {
        if (!MainImpl.IsCurrent || !VmImpl.Running || nic != 0) Violations++;
        Interlocked.Increment(ref _injectedCount);
        if (Record) lock (Injected) Injected.Add(frame.ToArray());
        var block = MemoryImpl.Blocks[0];
        ulong page = CityHash.Hash64(frame) % block.Pages;
        MemoryImpl.Write(0, page, 64, frame[..Math.Min(frame.Length, 256)]);
        for (int i = NoisePages; i > 0; i--)
        {
            ulong noisyPage = (ulong)_noise.NextInt64((long)block.Pages);
            if (NoiseBytes <= 8) MemoryImpl.Write(0, noisyPage, 8, (ulong)_noise.NextInt64());
            else
            {
                var bytes = new byte[Math.Min(NoiseBytes, GuestRamBlock.PageSize)];
                _noise.NextBytes(bytes);
                MemoryImpl.Write(0, noisyPage, 0, bytes);
            }
        }
        if (!Record) return 0;
        Nic.GuestSends(BinaryPrimitives.ReadInt32LittleEndian(frame));   // the guest's reply
        OutputHeld?.Invoke();   // as filter-plover's net_from_guest notice (here at once, on the main thread)
        return 0;
    }

    public void Announce() => Announces++;

    /// <summary>Called on the main thread after the guest sent a frame (the replica's OnOutputHeld).</summary>
    public Action? OutputHeld { get; set; }

    public void Dispose()
    {
        MainImpl.Dispose();
        MemoryImpl.Dispose();
    }
}
