using Plover.Consensus;

namespace Plover.Tests.Consensus;

/// <summary>
/// A seeded, virtual-time network between simulated nodes: every message is delayed by a random number of ticks
/// (so messages reorder), may be dropped or duplicated, and is lost when its link is partitioned at delivery.
/// </summary>
internal sealed class SimNetwork
{
    private readonly Random _random;
    private readonly PriorityQueue<Message, (long At, long Seq)> _inFlight = new();
    private readonly HashSet<(int From, int To)> _blocked = new();
    private long _seq;

    public SimNetwork(Random random) => _random = random;

    public double DropRate { get; set; }
    public double DuplicateRate { get; set; }
    public int MinDelay { get; set; } = 1;
    public int MaxDelay { get; set; } = 1;
    public long Sent { get; private set; }
    public long Delivered { get; private set; }
    /// <summary>Optional tap on every message handed to the network (tests count batches with it).</summary>
    public Action<Message>? OnSend { get; set; }

    public int InFlight => _inFlight.Count;

    public void Send(Message m, long now)
    {
        Sent++;
        OnSend?.Invoke(m);
        if (_random.NextDouble() < DropRate) return;
        Enqueue(m, now);
        if (_random.NextDouble() < DuplicateRate) Enqueue(m, now);
    }

    private void Enqueue(Message m, long now) =>
        _inFlight.Enqueue(m, (now + _random.Next(MinDelay, MaxDelay + 1) + LagOf(m.From) + LagOf(m.To), _seq++));

    private readonly Dictionary<int, int> _lag = new();

    /// <summary>Extra delay, in ticks, of everything a node sends or receives (a slow host or link); 0 removes it.</summary>
    public void SetLag(int node, int ticks)
    {
        if (ticks > 0) _lag[node] = ticks; else _lag.Remove(node);
    }

    private int LagOf(int node) => _lag.TryGetValue(node, out int t) ? t : 0;

    /// <summary>Removes and returns the next message due at or before now, if any, skipping blocked links.</summary>
    public bool TryDeliver(long now, out Message message)
    {
        while (_inFlight.TryPeek(out var m, out var key) && key.At <= now)
        {
            _inFlight.Dequeue();
            if (_blocked.Contains((m.From, m.To))) continue;
            Delivered++;
            message = m;
            return true;
        }
        message = default;
        return false;
    }

    public void Block(int from, int to) => _blocked.Add((from, to));
    public void Unblock(int from, int to) => _blocked.Remove((from, to));

    /// <summary>Cuts node off from every other node in both directions.</summary>
    public void Isolate(int node, IEnumerable<int> all)
    {
        foreach (int other in all)
            if (other != node) { Block(node, other); Block(other, node); }
    }

    public void CutLink(int a, int b) { Block(a, b); Block(b, a); }
    public void HealAll() { _blocked.Clear(); _lag.Clear(); }
    public bool IsBlocked(int from, int to) => _blocked.Contains((from, to));
}
