namespace Plover.Node;

/// <summary>How a node enters the cluster.</summary>
public enum StartMode
{
    /// <summary>Every member is just starting: a new cluster, the configured primary leads ballot 1.</summary>
    Fresh,
    /// <summary>Some member already runs a cluster: join it with an empty consensus memory (never claiming the
    /// fresh-cluster ballot) and, for a replica, as a backup that needs a full sync.</summary>
    Join,
}

/// <summary>
/// Decides <see cref="StartMode"/> before the consensus core is created: a node that restarts into a running
/// cluster must not assume the fresh-cluster ballot (1, primary), which the others moved past, or it would
/// propose values in a ballot that already chose others. It asks every connected peer for its NodeStatus: any peer
/// that is not fresh means Join; every peer fresh (or just starting) means Fresh. Waits for the answers up to the
/// deadline; null if neither is known by then (some peer never answered).
/// </summary>
public static class StartupProbe
{
    public static StartMode? Decide(NodeStatusService status, IReadOnlyList<int> peers, long deadlineMs, Func<bool> stopping)
    {
        long asked = 0;
        while (Environment.TickCount64 < deadlineMs && !stopping())
        {
            if (Environment.TickCount64 - asked > 100)
            {
                asked = Environment.TickCount64;
                status.RequestAll();
            }
            int fresh = 0;
            foreach (int peer in peers)
            {
                var s = status.Latest(peer);
                if (s is null) continue;
                if (!s.Fresh) return StartMode.Join;
                fresh++;
            }
            if (fresh == peers.Count) return StartMode.Fresh;
            Thread.Sleep(10);
        }
        return null;
    }

    /// <summary>Why <see cref="Decide"/> gave up: the peers that never answered, and the last error seen for each.</summary>
    public static string Unanswered(NodeStatusService status, Transport.TcpTransport transport)
    {
        var silent = transport.Peers.Where(p => status.Latest(p) is null)
            .Select(p => $"node {p} ({transport.Problem(p) ?? "connected, no answer"})");
        return $"no answer to the start-up probe from {string.Join(", ", silent)}: a fresh cluster starts when all its " +
               "nodes are up, a restarted node joins through any running member";
    }
}
