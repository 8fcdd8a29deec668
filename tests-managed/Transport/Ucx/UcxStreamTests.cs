using Plover.Transport.Ucx;
using Xunit;

namespace Plover.Tests.Transport.Ucx;

/// <summary>The UCX byte stream over UCX's TCP transport, between two workers of this process.</summary>
public sealed class UcxStreamTests
{
    [UcxFact]
    public void Bytes_arrive_in_order_both_ways_and_a_closed_peer_fails_the_wait()
    {
        var log = new Plover.Tests.Transport.TestLog();
        using var a = new UcxWorker(UcxSettings.OverTcp, "a", log.Sink);
        using var b = new UcxWorker(UcxSettings.OverTcp, "b", log.Sink);
        var ab = new UcxStream(a, b.Address());
        var ba = new UcxStream(b, a.Address());
        var big = new byte[3 << 20];
        new Random(7).NextBytes(big);
        var sent = Task.Run(() => ab.Send(big, 10_000));
        var got = new byte[big.Length];
        int have = 0;
        while (have < got.Length)
        {
            int n = ba.Receive(got.AsSpan(have), 5000);
            Assert.True(n > 0, $"nothing after {have} bytes");
            have += n;
        }
        sent.Wait();
        Assert.Equal(big, got);
        ba.Send("pong"u8, 5000);
        var reply = new byte[4];
        Assert.Equal(4, ab.Receive(reply, 5000));
        Assert.Equal("pong"u8.ToArray(), reply);
        Assert.Equal(0, ab.Receive(reply, 50));   // nothing more
        ba.Dispose();
        ab.Dispose();
        Assert.Throws<IOException>(() => ab.Receive(reply, 10));
        Assert.Empty(log.Lines);   // e.g. an event-fd arm that reports "busy" (events pending) is no failure
    }
}
