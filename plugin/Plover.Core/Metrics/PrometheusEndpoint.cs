using System.Net;
using System.Net.Sockets;
using System.Text;
using Prometheus;

namespace Plover.Metrics;

/// <summary>
/// A node's Prometheus endpoint: <c>GET /metrics</c> (and HEAD) on one address answers with the text exposition
/// format of a prometheus-net <see cref="CollectorRegistry"/>, whose before-collect callbacks read the node's own
/// counters at that moment (see <see cref="NodeMetrics"/>). Anything else is refused (404, 405, 400). Read-only.
/// <para>
/// One background thread serves one connection at a time (a scrape is a few kilobytes; Prometheus scrapes every
/// few seconds), with 2 s socket timeouts so that a stalled client cannot hold it longer, and every connection is
/// closed after its answer. It never touches QEMU's main thread and never throws out of its thread.
/// </para>
/// <para>
/// Why not prometheus-net's own MetricServer: it is an HttpListener, which answers only requests whose Host header
/// names the prefix's host, so a scrape of <c>10.1.0.1:9400</c> by a host name (or through a tunnel) gets a 404,
/// and the wildcard prefix that would avoid that listens on every interface instead of the configured address.
/// </para>
/// </summary>
public sealed class PrometheusEndpoint : IDisposable
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";
    private const int MaxRequestBytes = 8192;
    private const int IoTimeoutMs = 2000;
    private const int SolSocket = 1, SoReuseAddr = 2;   // Linux

    private readonly Socket _listener;
    private readonly CollectorRegistry _registry;
    private readonly Action<string> _log;
    private readonly Thread _thread;
    private volatile bool _stop;
    private long _scrapes, _failures;

    private PrometheusEndpoint(Socket listener, CollectorRegistry registry, Action<string> log)
    {
        _listener = listener;
        _registry = registry;
        _log = log;
        Endpoint = (IPEndPoint)listener.LocalEndPoint!;
        _thread = new Thread(Serve) { IsBackground = true, Name = "plover-metrics" };
    }

    /// <summary>Where it listens (the bound port when the requested one was 0).</summary>
    public IPEndPoint Endpoint { get; }

    /// <summary>Answers with metrics so far.</summary>
    public long Scrapes => Interlocked.Read(ref _scrapes);

    /// <summary>Binds at and starts serving registry. Throws SocketException when the address cannot be bound
    /// (in use, not an address of this host).</summary>
    public static PrometheusEndpoint Start(IPEndPoint at, CollectorRegistry registry, Action<string> log)
    {
        var listener = new Socket(at.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            // SO_REUSEADDR alone (a restart binds despite connections in TIME_WAIT); .NET's ReuseAddress option
            // would add SO_REUSEPORT, which lets a second process listen on the same port
            if (OperatingSystem.IsLinux()) listener.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
            if (at.Address.Equals(IPAddress.IPv6Any)) listener.DualMode = true;   // [::] takes IPv4 too
            listener.Bind(at);
            listener.Listen(16);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        var endpoint = new PrometheusEndpoint(listener, registry, log);
        endpoint._thread.Start();
        return endpoint;
    }

    public void Dispose()
    {
        if (_stop) return;
        _stop = true;
        if (_thread.IsAlive && !_thread.Join(TimeSpan.FromSeconds(10)))
            _log($"metrics endpoint {Endpoint}: its thread did not stop");
        _listener.Dispose();
    }

    private void Serve()
    {
        while (!_stop)
        {
            Socket client;
            try
            {
                if (!_listener.Poll(100_000, SelectMode.SelectRead)) continue;   // wake every 100 ms to notice _stop
                client = _listener.Accept();
            }
            catch (Exception e) when (!_stop)
            {
                _log($"metrics endpoint {Endpoint}: accept failed: {e.GetType().Name}: {e.Message}");
                Thread.Sleep(100);
                continue;
            }
            catch (Exception)
            {
                return;   // stopping: the listener is being closed under us
            }
            try
            {
                Handle(client);
            }
            catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
            {
                // the client went away or stalled: its problem
            }
            catch (Exception e)
            {
                if (Interlocked.Increment(ref _failures) <= 10)
                    _log($"metrics endpoint {Endpoint}: {e.GetType().Name}: {e.Message}");
            }
            finally
            {
                client.Dispose();
            }
        }
    }

    private void Handle(Socket client)
    {
        client.SendTimeout = IoTimeoutMs;
        client.NoDelay = true;
        var buffer = new byte[MaxRequestBytes];
        long deadline = Environment.TickCount64 + IoTimeoutMs;   // for the whole request, however it trickles in
        int length = 0, end;
        while ((end = HeaderEnd(buffer.AsSpan(0, length))) < 0)
        {
            if (length == buffer.Length)
            {
                Reply(client, "431 Request Header Fields Too Large", "request header too large\n");
                return;
            }
            long left = deadline - Environment.TickCount64;
            if (left <= 0) return;
            client.ReceiveTimeout = (int)left;
            int n = client.Receive(buffer, length, buffer.Length - length, SocketFlags.None);
            if (n == 0) return;
            length += n;
        }
        string head = Encoding.ASCII.GetString(buffer, 0, end);
        int lineEnd = head.IndexOf('\n');
        string[] request = (lineEnd < 0 ? head : head[..lineEnd]).TrimEnd('\r').Split(' ');
        if (request.Length != 3 || !request[2].StartsWith("HTTP/1.", StringComparison.Ordinal))
        {
            Reply(client, "400 Bad Request", "not an HTTP/1.x request\n");
            return;
        }
        string method = request[0];
        if (method is not ("GET" or "HEAD"))
        {
            Reply(client, "405 Method Not Allowed", "only GET and HEAD (read-only)\n", extraHeaders: "Allow: GET, HEAD\r\n");
            return;
        }
        if (RequestPath(request[1]) != "/metrics")
        {
            Reply(client, "404 Not Found", "the metrics are at /metrics\n", head: method == "HEAD");
            return;
        }
        byte[] body;
        try
        {
            using var text = new MemoryStream(16 * 1024);
            _registry.CollectAndExportAsTextAsync(text).GetAwaiter().GetResult();
            body = text.ToArray();
        }
        catch (Exception e) when (e is not (SocketException or IOException))
        {
            if (Interlocked.Increment(ref _failures) <= 10)
                _log($"metrics endpoint {Endpoint}: collecting failed: {e.GetType().Name}: {e.Message}");
            Reply(client, "500 Internal Server Error", $"collecting the metrics failed: {e.GetType().Name}: {e.Message}\n");
            return;
        }
        Interlocked.Increment(ref _scrapes);
        Reply(client, "200 OK", body, ContentType, head: method == "HEAD");
    }

    /// <summary>The path of an origin-form ("/metrics?x") or absolute-form ("http://host:port/metrics") target.</summary>
    private static string RequestPath(string target)
    {
        int scheme = target.IndexOf("://", StringComparison.Ordinal);
        if (scheme > 0 && target.IndexOf('/', scheme + 3) is var slash and >= 0) target = target[slash..];
        int query = target.IndexOfAny(['?', '#']);
        return query < 0 ? target : target[..query];
    }

    private static int HeaderEnd(ReadOnlySpan<byte> data)
    {
        int crlf = data.IndexOf("\r\n\r\n"u8);
        if (crlf >= 0) return crlf;
        int lf = data.IndexOf("\n\n"u8);
        return lf;
    }

    private static void Reply(Socket client, string status, string text, string? extraHeaders = null, bool head = false) =>
        Reply(client, status, Encoding.UTF8.GetBytes(text), "text/plain; charset=utf-8", extraHeaders, head);

    private static void Reply(Socket client, string status, byte[] body, string contentType, string? extraHeaders = null, bool head = false)
    {
        byte[] header = Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Type: {contentType}\r\nContent-Length: {body.Length}\r\n" +
                                                $"{extraHeaders}Connection: close\r\n\r\n");
        SendAll(client, header);
        if (!head) SendAll(client, body);
        client.Shutdown(SocketShutdown.Send);
    }

    private static void SendAll(Socket client, byte[] data)
    {
        for (int sent = 0; sent < data.Length;)
            sent += client.Send(data, sent, data.Length - sent, SocketFlags.None);
    }
}
