using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Plover.Consensus;
using Plover.Node;
using Plover.Transport;

namespace Plover.Tests.Transport;

/// <summary>Thread-safe log capture with waiting on a line that contains some text.</summary>
public sealed class TestLog
{
    private readonly ConcurrentQueue<string> _lines = new();
    public void Add(string line) => _lines.Enqueue(line);
    public string[] Lines => _lines.ToArray();
    public Action<string> Sink => Add;

    public bool WaitFor(string fragment, int timeoutMs = 5000)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (sw.ElapsedMilliseconds < timeoutMs)
        {
            if (_lines.Any(l => l.Contains(fragment, StringComparison.Ordinal))) return true;
            Thread.Sleep(5);
        }
        return false;
    }

    public override string ToString() => string.Join("\n", _lines);
}

/// <summary>Records frames and connection events from a transport.</summary>
public sealed class RecordingSink : IFrameSink
{
    public readonly ConcurrentQueue<(int Peer, FrameType Type, byte[] Body)> Frames = new();
    public readonly ConcurrentQueue<(int Peer, bool Up)> Events = new();
    private readonly int _selfId;

    public RecordingSink(int selfId) => _selfId = selfId;

    public void OnFrame(int peer, in Frame frame)
    {
        if (frame.Type == FrameType.Consensus)
            new ConsensusFrameDecoder().Decode(_selfId, peer, frame.Header, frame.Tail);   // throws on garbage: connection closed
        Frames.Enqueue((peer, frame.Type, frame.Body.ToArray()));
    }

    public void OnPeerConnected(int peer) => Events.Enqueue((peer, true));
    public void OnPeerDisconnected(int peer, string reason) => Events.Enqueue((peer, false));
}

public static class TransportTestKit
{
    public const string Cluster = "test";

    /// <summary>Free loopback ports (bound then released: fine for tests on one machine).</summary>
    public static int[] FreePorts(int n)
    {
        var sockets = Enumerable.Range(0, n).Select(_ =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            return s;
        }).ToArray();
        var ports = sockets.Select(s => ((IPEndPoint)s.LocalEndPoint!).Port).ToArray();
        foreach (var s in sockets) s.Dispose();
        return ports;
    }

    public static Dictionary<int, IPEndPoint> Endpoints(int[] ids, int[] ports) =>
        ids.Select((id, i) => (id, ep: new IPEndPoint(IPAddress.Loopback, ports[i]))).ToDictionary(x => x.id, x => x.ep);

    public static TcpTransportOptions Options(int self, Dictionary<int, IPEndPoint> endpoints, Action<string> log,
                                              IdentityKey? key = null, string cluster = Cluster, TimeSpan? handshakeTimeout = null,
                                              int maxFrameBytes = FrameFormat.DefaultMaxFrameBytes, bool encrypt = true,
                                              Plover.Transport.Ucx.UcxSettings? ucx = null) =>
        new()
        {
            Identity = TestKeys.Identity(self, endpoints.Keys, cluster, encrypt, key),
            Endpoints = endpoints,
            Log = log,
            HandshakeTimeout = handshakeTimeout ?? TimeSpan.FromSeconds(2),
            MaxFrameBytes = maxFrameBytes,
            Ucx = ucx,
        };

    /// <summary>Node id of the test cluster (1 and 2 run VMs, 3 is the witness; node 1 leads first): a consensus driver
    /// over a real TCP transport, the transport started, the driver not yet. Election ticks are generous: the test
    /// machines are small and shared, and a thread not scheduled for tens of milliseconds must not start elections.
    /// committed is attached before the transport starts (an inline-processing node may commit from a reader thread).</summary>
    public static (TcpTransport Transport, ConsensusDriver Driver) StartConsensusNode(
        int id, Dictionary<int, IPEndPoint> endpoints, Action<string> log, int electionMinTicks, int electionMaxTicks,
        int retransmitTicks, bool inline = false, DurableState? restored = null, Action<LogEntry>? committed = null, int traceHopsEvery = 0,
        Plover.Transport.Ucx.UcxSettings? ucx = null)
    {
        var members = new[] { new ConsensusMember(1, true), new ConsensusMember(2, true), new ConsensusMember(3, false) };
        var transport = new TcpTransport(Options(id, endpoints, log, ucx: ucx));
        var driver = new ConsensusDriver(new ConsensusDriverOptions
        {
            Consensus = new ConsensusConfig
            {
                SelfId = id, Members = members, InitialLeaderId = 1,
                ElectionMinTicks = electionMinTicks, ElectionMaxTicks = electionMaxTicks, RetransmitTicks = retransmitTicks,
            },
            Log = log,
            Seed = id,
            InlineProcessing = inline,
            Restored = restored,
            TraceHopsEvery = traceHopsEvery,
        }, transport) { Committed = committed };
        var dispatcher = new FrameDispatcher();
        driver.Attach(dispatcher);
        transport.Start(dispatcher);
        return (transport, driver);
    }

    public static bool WaitUntil(Func<bool> condition, int timeoutMs = 10000)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (sw.ElapsedMilliseconds < timeoutMs)
        {
            if (condition()) return true;
            Thread.Sleep(2);
        }
        return condition();
    }

    /// <summary>A Ping body: u32 header length 0, no header, tail = payload.</summary>
    public static byte[] RawBody(ReadOnlySpan<byte> tail)
    {
        var b = new byte[4 + tail.Length];
        tail.CopyTo(b.AsSpan(4));
        return b;
    }
}
