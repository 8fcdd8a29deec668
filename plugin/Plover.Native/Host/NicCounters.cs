namespace Plover.Native.Host;

/// <summary>What the probe saw on one NIC. Touched only on QEMU's main thread (hooks and admin commands run
/// there), so there is no locking. Stolen frames go into a fixed ring of reused buffers: no allocation per
/// frame once a slot is big enough.</summary>
internal sealed class NicCounters(uint id)
{
    public const int KeptStolenFrames = 8;

    private readonly byte[][] _ring = new byte[KeptStolenFrames][];
    private readonly int[] _ringLength = new int[KeptStolenFrames];
    private int _ringNext;

    public uint Id { get; } = id;
    public long ToGuestFrames { get; private set; }
    public long ToGuestBytes { get; private set; }
    public bool Steal { get; set; }
    public long StolenFrames { get; private set; }
    public long StolenBytes { get; private set; }
    public ulong HeldEpoch { get; private set; }
    public ulong HeldPkts { get; private set; }
    public ulong HeldBytes { get; private set; }
    public long FromGuestReports { get; private set; }
    public ulong LastCutEpoch { get; set; }
    public long Released { get; set; }
    public long Discarded { get; set; }

    public unsafe void CountToGuest(Interop.Iovec* iov, int iovcnt, long bytes)
    {
        ToGuestFrames++;
        ToGuestBytes += bytes;
        if (!Steal)
            return;
        StolenFrames++;
        StolenBytes += bytes;
        int slot = _ringNext;
        _ringNext = (_ringNext + 1) % KeptStolenFrames;
        byte[] buf = _ring[slot];
        if (buf == null || buf.Length < bytes)
            buf = _ring[slot] = new byte[Math.Max((int)bytes, 2048)];
        int at = 0;
        for (int i = 0; i < iovcnt; i++)
        {
            new ReadOnlySpan<byte>(iov[i].iov_base, (int)iov[i].iov_len).CopyTo(buf.AsSpan(at));
            at += (int)iov[i].iov_len;
        }
        _ringLength[slot] = at;
    }

    public void RecordHeld(ulong epoch, ulong pkts, ulong bytes)
    {
        HeldEpoch = epoch;
        HeldPkts = pkts;
        HeldBytes = bytes;
        FromGuestReports++;
    }

    /// <summary>The last stolen frames, oldest first (at most KeptStolenFrames).</summary>
    public List<byte[]> LastStolen()
    {
        var frames = new List<byte[]>();
        int kept = (int)Math.Min(StolenFrames, KeptStolenFrames);
        for (int k = kept; k > 0; k--)
        {
            int slot = ((_ringNext - k) % KeptStolenFrames + KeptStolenFrames) % KeptStolenFrames;
            frames.Add(_ring[slot].AsSpan(0, _ringLength[slot]).ToArray());
        }
        return frames;
    }
}
