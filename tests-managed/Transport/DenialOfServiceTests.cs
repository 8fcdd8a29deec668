using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Plover.Node;
using Plover.Tests.Sync;
using Plover.Transport;
using Xunit;

namespace Plover.Tests.Transport;

/// <summary>
/// Strangers opening many silent and garbage connections (from 127.0.0.2: another host, as far as the limits per
/// source go) to the consensus port and the sync port: the genuine peers keep being served, handshake threads stay
/// at normal priority, the log stays bounded and the sync link comes back within a bound. They read the scheduling
/// policy of the whole process's threads, so they run alone (other tests' authenticated readers run real-time too).
/// </summary>
[Collection(Plover.Tests.Allocation.AllocationCollection.Name)]
public sealed class DenialOfServiceTests
{
    private static readonly IPAddress Stranger = IPAddress.Parse("127.0.0.2");

    /// <summary>count connections from 127.0.0.2 to target: half send nothing, half send garbage and stay open.</summary>
    private static List<Socket> Flood(IPEndPoint target, int count)
    {
        var sockets = new List<Socket>();
        var garbage = new byte[64];
        new Random(7).NextBytes(garbage);
        garbage[4] = 1;   // a Hello's type, with an absurd length: refused on sight
        for (int i = 0; i < count; i++)
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            s.Bind(new IPEndPoint(Stranger, 0));
            bool sendGarbage = i % 2 == 1;
            // Not waited for, as an attacker would not: a full accept queue delays a connect by seconds.
            _ = s.ConnectAsync(target).ContinueWith(t =>
            {
                if (t.IsCompletedSuccessfully && sendGarbage)
                    try { s.Send(garbage); } catch (Exception) { /* refused or reset: part of the flood too */ }
            });
            sockets.Add(s);
        }
        return sockets;
    }

    /// <summary>Scheduling policy (0 = SCHED_OTHER, 2 = SCHED_RR) of this process's threads named name.</summary>
    private static List<int> Policies(string name)
    {
        var result = new List<int>();
        foreach (var task in Directory.GetDirectories("/proc/self/task"))
        {
            try
            {
                if (File.ReadAllText(Path.Combine(task, "comm")).Trim() != name) continue;
                var stat = File.ReadAllText(Path.Combine(task, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                result.Add(int.Parse(fields[38]));   // field 41 of stat; fields here start at field 3
            }
            catch (IOException) { /* the thread ended */ }
        }
        return result;
    }

    [Fact]
    public void AFloodOnTheConsensusPortLeavesThePeersServedAndTheLogBounded()
    {
        var log = new TestLog();
        var sink = new RecordingSink(1);
        int realTimeBefore = Policies("plover-tcp-in").Count(p => p != 0);   // threads of tests that ran before
        var eps = TransportTestKit.Endpoints([1, 2, 3], TransportTestKit.FreePorts(3));
        using var server = new TcpTransport(TransportTestKit.Options(3, eps, log.Sink));
        server.Start(new RecordingSink(3));
        using var good = new TcpTransport(TransportTestKit.Options(1, eps, _ => { }));
        good.Start(sink);
        Assert.True(TransportTestKit.WaitUntil(() => good.IsConnected(3)), log.ToString());

        var flood = Flood(eps[3], 60);
        try
        {
            Thread.Sleep(300);   // the flood arrives
            // Strangers' handshakes run at normal priority (before the fix, each got a real-time thread); the one
            // real-time "plover-tcp-in" thread is node 1's reader, raised once node 1 was authenticated.
            // The first burst's silent strangers time out after a second and the per-source cap holds 4 at a time, so
            // a sample can fall between them: strangers keep coming, as in a real flood, until 4 are seen at once.
            var sinceWave = Stopwatch.StartNew();
            Assert.True(TransportTestKit.WaitUntil(() =>
            {
                if (Policies("plover-tcp-in").Count(p => p == 0) >= 4) return true;
                if (sinceWave.ElapsedMilliseconds >= 500) { flood.AddRange(Flood(eps[3], 8)); sinceWave.Restart(); }
                return false;
            }, 10_000), "no stranger's handshake thread seen");
            Assert.True(Policies("plover-tcp-in").Count(p => p != 0) <= realTimeBefore + 1, string.Join(",", Policies("plover-tcp-in")));

            // Node 1 keeps its round trips (pongs to 200 pings, each within a second).
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < 200; i++)
            {
                var marker = BitConverter.GetBytes(i);
                Assert.True(good.Send(3, FrameType.Ping, TransportTestKit.RawBody(marker)));
                good.Flush();
                Assert.True(TransportTestKit.WaitUntil(() => sink.Frames.Any(f => f.Type == FrameType.Pong && f.Body.AsSpan(4).SequenceEqual(marker)), 1000),
                            $"ping {i} got no pong within 1 s under the flood\n{log}");
            }
            // A genuine node connecting anew (node 2, from another address than the strangers) gets in at once.
            using var peer = RawPeer.Connect(eps[3]);
            peer.Authenticate(TestKeys.Identity(2, [1, 2, 3]), 3);
            peer.SendBytes(peer.Encode(FrameType.Ping, TransportTestKit.RawBody([1])));
            Assert.Equal(FrameType.Pong, peer.ReadFrame()!.Value.Type);

            // 60 refused connections, at most 10 log lines in the window.
            Thread.Sleep(1500);   // the silent ones time out (the Hello is due within a second)
            int refusals = log.Lines.Count(l => l.Contains("refused connection from"));
            Assert.InRange(refusals, 1, 10);
        }
        finally
        {
            foreach (var s in flood) s.Dispose();
        }
    }

    [Fact]
    public void TheSyncLinkComesBackUnderAFlood()
    {
        var log = new TestLog();
        using var pair = new SyncPair([("pc.ram", 1UL << 20)]);
        pair.Primary.Connection!.Dispose();   // the pair comes connected; here the links connect it
        pair.Backup.Connection!.Dispose();
        var members = new[] { 1, 2, 3 };
        using var backupLink = new ReplicaSyncLink(pair.Backup, TestKeys.Identity(2, members), 1,
            new IPEndPoint(IPAddress.Loopback, 0), new IPEndPoint(IPAddress.Loopback, 1), TimeSpan.FromSeconds(5), log.Sink);
        var flood = Flood(backupLink.ListenEndpoint!, 40);   // the strangers come first
        try
        {
            var sw = Stopwatch.StartNew();
            using var primaryLink = new ReplicaSyncLink(pair.Primary, TestKeys.Identity(1, members), 2,
                new IPEndPoint(IPAddress.Loopback, 0), backupLink.ListenEndpoint!, TimeSpan.FromSeconds(5), log.Sink);
            Assert.True(TransportTestKit.WaitUntil(() => backupLink.Connections == 1 && primaryLink.Connected && backupLink.Connected, 3000),
                        $"sync link not up within 3 s of the flood\n{log}");
            // The link breaks (an aborted sync closes it) while more strangers arrive: back within 3 s.
            flood.AddRange(Flood(backupLink.ListenEndpoint!, 40));
            pair.Primary.Connection!.Dispose();   // an abort closes both ends
            pair.Backup.Connection!.Dispose();
            Assert.True(TransportTestKit.WaitUntil(() => backupLink.Connections >= 2 && primaryLink.Connected && backupLink.Connected, 3000),
                        $"sync link not back within 3 s under the flood (primary connected {primaryLink.Connected}, problem {primaryLink.Problem}; " +
                        $"backup connected {backupLink.Connected}, connections {backupLink.Connections}, problem {backupLink.Problem})\n{log}");
            Assert.InRange(log.Lines.Count(l => l.Contains("refused connection from")), 1, 10);
        }
        finally
        {
            foreach (var s in flood) s.Dispose();
        }
    }
}
