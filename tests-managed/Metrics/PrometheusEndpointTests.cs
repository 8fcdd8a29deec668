using System.Net;
using System.Net.Sockets;
using System.Text;
using Plover.Metrics;
using Prometheus;
using Xunit;

namespace Plover.Tests.Metrics;

/// <summary>The HTTP side of the metrics endpoint, and the export of the project's latency histograms.</summary>
public sealed class PrometheusEndpointTests : IDisposable
{
    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();
    private readonly List<string> _log = new();
    private readonly PrometheusEndpoint _endpoint;
    private int _collected;

    public PrometheusEndpointTests()
    {
        var f = Prometheus.Metrics.WithCustomRegistry(_registry);
        var gauge = f.CreateGauge("plover_test_collections", "How often the registry was collected.");
        _registry.AddBeforeCollectCallback(() => gauge.Set(Interlocked.Increment(ref _collected)));
        _endpoint = PrometheusEndpoint.Start(new IPEndPoint(IPAddress.Loopback, 0), _registry, m => { lock (_log) _log.Add(m); });
    }

    public void Dispose() => _endpoint.Dispose();

    private string Url(string path = "/metrics") => $"http://127.0.0.1:{_endpoint.Endpoint.Port}{path}";

    /// <summary>Sends raw bytes, returns everything the endpoint answered until it closed the connection.</summary>
    private string Raw(string request)
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.ReceiveTimeout = 10_000;
        s.Connect(_endpoint.Endpoint);
        s.Send(Encoding.ASCII.GetBytes(request));
        var answer = new MemoryStream();
        var buffer = new byte[4096];
        int n;
        while ((n = s.Receive(buffer)) > 0) answer.Write(buffer, 0, n);
        return Encoding.UTF8.GetString(answer.ToArray());
    }

    [Fact]
    public async Task Serves_the_registry_collected_at_each_scrape()
    {
        using var http = new HttpClient();
        var first = await PrometheusText.Scrape(http, Url());
        var second = await PrometheusText.Scrape(http, Url("/metrics?format=text"));
        Assert.Equal("gauge", first.Type("plover_test_collections"));
        Assert.Equal(first["plover_test_collections"] + 1, second["plover_test_collections"]);
        Assert.Equal(2, _endpoint.Scrapes);
    }

    [Fact]
    public void Any_host_name_is_answered()
    {
        // an HttpListener bound to 127.0.0.1 answers 404 to "Host: localhost"; a scrape by any name must work
        string answer = Raw("GET /metrics HTTP/1.1\r\nHost: metrics.example.org:9400\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", answer);
        Assert.Contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n", answer);
        Assert.Contains("\nplover_test_collections ", answer);
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", Raw("GET http://127.0.0.1/metrics HTTP/1.0\r\n\r\n"));
    }

    [Fact]
    public void Anything_but_reading_metrics_is_refused()
    {
        Assert.StartsWith("HTTP/1.1 404 Not Found\r\n", Raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 404 Not Found\r\n", Raw("GET /metrics/../admin HTTP/1.1\r\n\r\n"));
        string post = Raw("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 405 Method Not Allowed\r\n", post);
        Assert.Contains("Allow: GET, HEAD\r\n", post);
        Assert.StartsWith("HTTP/1.1 400 Bad Request\r\n", Raw("hello\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 431 ", Raw("GET /metrics HTTP/1.1\r\nX: " + new string('a', 9000) + "\r\n\r\n"));
        Assert.Equal(0, _collected);   // none of these collected anything
    }

    [Fact]
    public void Head_answers_the_length_without_the_body()
    {
        string head = Raw("HEAD /metrics HTTP/1.1\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", head);
        Assert.EndsWith("\r\n\r\n", head);
        Assert.DoesNotContain("plover_test_collections", head);
    }

    [Fact]
    public async Task A_stalled_client_does_not_stop_the_scrapes_for_long()
    {
        using var stalled = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        stalled.Connect(_endpoint.Endpoint);
        stalled.Send("GET /metr"u8.ToArray());   // and nothing more
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        await PrometheusText.Scrape(http, Url());
        Assert.True(sw.ElapsedMilliseconds < 5000, $"the scrape waited {sw.ElapsedMilliseconds} ms behind a stalled client");
    }

    [Fact]
    public void An_address_in_use_is_refused_at_start_and_a_restart_binds_at_once()
    {
        var e = Assert.Throws<SocketException>(() => PrometheusEndpoint.Start(_endpoint.Endpoint, _registry, _ => { }));
        Assert.Equal(SocketError.AddressAlreadyInUse, e.SocketErrorCode);
        for (int i = 0; i < 3; i++) Assert.StartsWith("HTTP/1.1 200 OK", Raw("GET /metrics HTTP/1.1\r\n\r\n"));   // connections in TIME_WAIT
        _endpoint.Dispose();
        using var again = PrometheusEndpoint.Start(_endpoint.Endpoint, _registry, _ => { });
        Assert.Equal(_endpoint.Endpoint, again.Endpoint);
    }

    [Fact]
    public void A_latency_histogram_is_exported_with_its_counts_and_sum()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var target = Prometheus.Metrics.WithCustomRegistry(registry).CreateHistogram("h_seconds", "h",
            new HistogramConfiguration { Buckets = NodeMetrics.LatencyBuckets });
        var source = new LatencyHistogram();
        var export = new NodeMetrics.HistogramExport(target);
        var counts = new long[LatencyHistogram.BucketCount];
        foreach (double us in new double[] { 3, 40, 40, 90, 700, 1_000, 120_000 }) source.Record(us);
        source.CopyCounts(counts);
        export.Update(counts);
        export.Update(counts);   // nothing new: nothing added
        // exported at the midpoints of the log-linear buckets: 3, 40.5, 40.5, 91, 696, 1000 and 119,808 us
        Assert.Equal(7, target.Count);
        Assert.Equal(0.121679, target.Sum, 6);
        var buckets = Collect(registry).Buckets("h_seconds").ToDictionary(b => b.Le, b => b.Count);
        Assert.Equal(3, buckets[0.00005]);
        Assert.Equal(4, buckets[0.0001]);
        Assert.Equal(4, buckets[0.0005]);
        Assert.Equal(6, buckets[0.001]);
        Assert.Equal(6, buckets[0.1]);
        Assert.Equal(7, buckets[0.25]);
        Assert.Equal(7, buckets[double.PositiveInfinity]);

        source.Reset();   // metrics-reset: what the source holds afterwards is new
        source.Record(2_000);
        source.CopyCounts(counts);
        export.Update(counts);
        Assert.Equal(8, target.Count);
    }

    private static PrometheusText Collect(CollectorRegistry registry)
    {
        using var s = new MemoryStream();
        registry.CollectAndExportAsTextAsync(s).GetAwaiter().GetResult();
        return new PrometheusText(Encoding.UTF8.GetString(s.ToArray()));
    }
}
