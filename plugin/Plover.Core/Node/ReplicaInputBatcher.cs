using System.Runtime.InteropServices;
using Plover.Consensus;
using Plover.Platform;

namespace Plover.Node;

/// <summary>
/// Collects frames stolen on their way into the primary's guest and proposes them as INPUT entries, one NIC per
/// entry, on its own thread: the hook only copies the frame into a per-NIC buffer (no allocation once the buffers
/// have grown) and wakes the thread, so QEMU's main thread never waits for consensus. Whatever arrived while the
/// previous proposal was being handed over goes out as one batch.
/// </summary>
internal sealed class ReplicaInputBatcher : IDisposable
{
    private sealed class NicBuffer
    {
        public byte[] Data = new byte[64 << 10];
        public int Used;
        public readonly List<int> Lengths = new();

        public void Clear() { Used = 0; Lengths.Clear(); }
    }

    private readonly Lock _lock = new();
    private readonly int _maxEntryBytes;
    private readonly int _maxPendingBytes;
    private readonly Func<ReadOnlyMemory<byte>, bool> _propose;
    private readonly Thread _thread;
    private readonly AutoResetEvent _wake = new(false);
    private List<NicBuffer> _filling = new();
    private List<NicBuffer> _sending = new();
    private int _pendingBytes;
    private byte[] _payload;
    private volatile bool _stop;
    private long _framesQueued, _framesDropped, _entriesProposed, _entriesRefused;

    public ReplicaInputBatcher(int maxEntryBytes, int maxPendingBytes, Func<ReadOnlyMemory<byte>, bool> propose)
    {
        if (maxEntryBytes < 1024) throw new ArgumentOutOfRangeException(nameof(maxEntryBytes), "at least 1024 bytes");
        _maxEntryBytes = maxEntryBytes;
        _maxPendingBytes = maxPendingBytes;
        _propose = propose;
        _payload = new byte[maxEntryBytes];
        _thread = ThreadScheduling.Start(Loop, "plover-input-batcher", ThreadScheduling.Priority.Realtime);
        _thread.Start();
    }

    public long FramesQueued => Interlocked.Read(ref _framesQueued);
    /// <summary>Frames dropped: backlog full, too large for one entry, or the proposal was refused (not leader).</summary>
    public long FramesDropped => Interlocked.Read(ref _framesDropped);
    public long EntriesProposed => Interlocked.Read(ref _entriesProposed);
    public long EntriesRefused => Interlocked.Read(ref _entriesRefused);

    /// <summary>Copies frame for nic into the backlog (any thread; the caller owns frame only for this call).</summary>
    public bool Add(int nic, ReadOnlySpan<byte> frame)
    {
        if (nic < 0 || 12 + frame.Length > _maxEntryBytes)
        {
            Interlocked.Increment(ref _framesDropped);
            return false;
        }
        lock (_lock)
        {
            if (_pendingBytes + frame.Length > _maxPendingBytes)
            {
                Interlocked.Increment(ref _framesDropped);
                return false;
            }
            while (_filling.Count <= nic) _filling.Add(new NicBuffer());
            var b = _filling[nic];
            if (b.Used + frame.Length > b.Data.Length)
                Array.Resize(ref b.Data, Math.Max(b.Data.Length * 2, b.Used + frame.Length));
            frame.CopyTo(b.Data.AsSpan(b.Used));
            b.Used += frame.Length;
            b.Lengths.Add(frame.Length);
            _pendingBytes += frame.Length;
        }
        Interlocked.Increment(ref _framesQueued);
        _wake.Set();
        return true;
    }

    private void Loop()
    {
        while (!_stop)
        {
            _wake.WaitOne();
            if (_stop) break;
            lock (_lock)
            {
                (_filling, _sending) = (_sending, _filling);
                _pendingBytes = 0;
            }
            for (int nic = 0; nic < _sending.Count; nic++)
            {
                var b = _sending[nic];
                if (b.Lengths.Count > 0) ProposeNic(nic, b);
                b.Clear();
            }
        }
    }

    /// <summary>Splits one NIC's backlog into entries of at most _maxEntryBytes, in arrival order.</summary>
    private void ProposeNic(int nic, NicBuffer b)
    {
        var lengths = CollectionsMarshal.AsSpan(b.Lengths);
        int first = 0, dataAt = 0;
        while (first < lengths.Length)
        {
            int count = 0, bytes = 8;
            while (first + count < lengths.Length && bytes + 4 + lengths[first + count] <= _maxEntryBytes)
            {
                bytes += 4 + lengths[first + count];
                count++;
            }
            var slice = lengths.Slice(first, count);
            int at = EntryPayloads.WriteInputHeader(_payload, nic, slice);
            int dataBytes = bytes - at;
            b.Data.AsSpan(dataAt, dataBytes).CopyTo(_payload.AsSpan(at));
            if (_propose(_payload.AsMemory(0, bytes))) Interlocked.Increment(ref _entriesProposed);
            else
            {
                Interlocked.Increment(ref _entriesRefused);
                Interlocked.Add(ref _framesDropped, count);
            }
            first += count;
            dataAt += dataBytes;
        }
    }

    public void Dispose()
    {
        _stop = true;
        _wake.Set();
        _thread.Join(TimeSpan.FromSeconds(2));
    }
}
