using System.Runtime.InteropServices;
using Plover.Platform;
using Plover.Transport.Ucx;
using Xunit;

namespace Plover.Tests.Transport.Ucx;

/// <summary>The UCX byte stream over UCX's TCP transport, between two workers of this process.</summary>
public sealed unsafe class UcxStreamTests
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

    [DllImport("libc", SetLastError = true)] private static extern int sched_setaffinity(int tid, nint size, ulong* mask);
    [DllImport("libc", SetLastError = true)] private static extern int sched_getaffinity(int tid, nint size, ulong* mask);
    [DllImport("libc")] private static extern int gettid();

    /// <summary>Pins the thread tid to the cores in mask (0: the calling thread).</summary>
    private static void Pin(int tid, ulong mask) =>
        Assert.True(sched_setaffinity(tid, sizeof(ulong), &mask) == 0, $"sched_setaffinity({tid}) failed: errno {Marshal.GetLastPInvokeError()}");

    /// <summary>The threads of this process named name (their comm, as the workers' progress threads are named).</summary>
    private static List<int> ThreadsNamed(string name)
    {
        var tids = new List<int>();
        foreach (var dir in Directory.GetDirectories("/proc/self/task"))
        {
            try { if (File.ReadAllText(Path.Combine(dir, "comm")).TrimEnd('\n') == name) tids.Add(int.Parse(Path.GetFileName(dir))); }
            catch (IOException) { /* the thread ended */ }
        }
        return tids;
    }

    /// <summary>
    /// The stall of `bench consensus` over UCX between processes, on one core: a caller of normal priority (like a
    /// reader or a bench client) holds the worker's lock when a real-time thread (like the consensus thread's
    /// heartbeat every millisecond) wakes on the same core and takes the lock too. With UCX's default spinlock the
    /// real-time thread spun until throttled (0.95-1 s) and the ping-pong made about 100 round trips a second; with the
    /// worker's mutex it makes thousands. Only this test's threads and its workers' progress threads are pinned (not
    /// UCX's process-wide async thread). Real-time priority needs CAP_SYS_NICE (root here); without it this proves less.
    /// </summary>
    [UcxFact]
    public void Round_trips_keep_flowing_on_one_core_beside_a_real_time_sender()
    {
        const int RoundTrips = 20_000;
        const int DeadlineMs = 30_000;
        ulong all = 0;
        Assert.Equal(0, sched_getaffinity(0, sizeof(ulong), &all));
        ulong one = all & (ulong)-(long)all;   // the lowest core we may run on
        var stop = false;
        UcxWorker? a = null, b = null;
        UcxStream? ab = null, ba = null, beat = null;
        Thread? echo = null, sender = null;
        try
        {
            a = new UcxWorker(UcxSettings.OverTcp, "1c-a");
            b = new UcxWorker(UcxSettings.OverTcp, "1c-b");
            foreach (string name in new[] { "plover-ucx-1c-a", "plover-ucx-1c-b" })   // at most 15 characters, as Linux keeps them
            {
                var tids = ThreadsNamed(name);
                Assert.True(tids.Count == 1, $"{tids.Count} threads named {name}");
                Pin(tids[0], one);
            }
            (ab, ba, beat) = (new UcxStream(a, b.Address()), new UcxStream(b, a.Address()), new UcxStream(a, b.Address()));
            var echoSide = ba;
            echo = new Thread(() =>
            {
                Pin(0, one);
                var buffer = new byte[64];
                while (!Volatile.Read(ref stop))
                {
                    int n = echoSide.Receive(buffer, 50);
                    if (n > 0) echoSide.Send(buffer.AsSpan(0, n), 5000);
                }
            }) { Name = "echo" };
            echo.Start();
            var beatSide = beat;
            sender = ThreadScheduling.Start(() =>
            {
                Pin(0, one);
                var heartbeat = new byte[8];
                while (!Volatile.Read(ref stop))
                {
                    beatSide.Send(heartbeat, 5000);
                    Thread.Sleep(1);
                }
            }, "heartbeat", ThreadScheduling.Priority.Realtime);
            sender.Start();

            Pin(0, one);
            var ping = new byte[8];
            var pong = new byte[8];
            long deadline = Environment.TickCount64 + DeadlineMs;
            int done = 0;
            while (done < RoundTrips && Environment.TickCount64 < deadline)
            {
                ab.Send(ping, 5000);
                int have = 0;
                while (have < pong.Length && Environment.TickCount64 < deadline) have += ab.Receive(pong.AsSpan(have), 100);
                if (have == pong.Length) done++;
            }
            Assert.True(done == RoundTrips, $"only {done} of {RoundTrips} round trips within {DeadlineMs / 1000} s on one core beside a real-time sender");
        }
        finally
        {
            sched_setaffinity(0, sizeof(ulong), &all);
            Volatile.Write(ref stop, true);
            sender?.Join();
            echo?.Join();
            beat?.Dispose();
            ba?.Dispose();
            ab?.Dispose();
            b?.Dispose();
            a?.Dispose();
        }
    }
}
