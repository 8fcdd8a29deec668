using System.Globalization;
using System.Net.Http;
using Xunit;

namespace Plover.Tests.Metrics;

/// <summary>
/// One scrape in the Prometheus text format, parsed: every sample by its series ("name" or "name{a=\"x\",b=\"y\"}",
/// labels as written), and every family's # TYPE. Parsing is strict enough to catch a malformed exposition: a line
/// that is neither a comment nor "series value" fails the test.
/// </summary>
public sealed class PrometheusText
{
    private readonly Dictionary<string, double> _samples = new();
    private readonly Dictionary<string, string> _types = new();

    public PrometheusText(string text)
    {
        Text = text;
        foreach (string raw in text.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            if (line.Length == 0) continue;
            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                string[] parts = line.Split(' ');
                Assert.True(parts.Length == 4, $"bad TYPE line: {line}");
                _types[parts[2]] = parts[3];
                continue;
            }
            if (line.StartsWith('#')) continue;
            int space = line.LastIndexOf(' ');
            Assert.True(space > 0, $"not a sample: {line}");
            string series = line[..space];
            string value = line[(space + 1)..];
            Assert.True(double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ||
                        value is "+Inf" or "-Inf" or "NaN", $"bad value in: {line}");
            if (value == "+Inf") v = double.PositiveInfinity;
            Assert.False(_samples.ContainsKey(series), $"series twice: {series}");
            _samples[series] = v;
        }
    }

    public string Text { get; }

    public static async Task<PrometheusText> Scrape(HttpClient http, string url)
    {
        using var response = await http.GetAsync(url);
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"GET {url}: {(int)response.StatusCode}: {body}");
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        return new PrometheusText(body);
    }

    public string? Type(string family) => _types.GetValueOrDefault(family);

    public bool Has(string series) => _samples.ContainsKey(series);

    /// <summary>The sample of series (failing the test when it is absent).</summary>
    public double this[string series] =>
        _samples.TryGetValue(series, out double v) ? v : throw new Xunit.Sdk.XunitException($"no series {series} in:\n{Text}");

    /// <summary>The sample of series, or fallback when it is absent.</summary>
    public double Get(string series, double fallback) => _samples.GetValueOrDefault(series, fallback);

    /// <summary>Every series of a family whose labels contain all of the given "key=\"value\"" pairs.</summary>
    public IEnumerable<KeyValuePair<string, double>> Family(string name, params string[] labels) =>
        _samples.Where(s => (s.Key == name || s.Key.StartsWith(name + "{", StringComparison.Ordinal)) &&
                            labels.All(l => s.Key.Contains(l, StringComparison.Ordinal)));

    /// <summary>The sum over a family's series that carry the given labels.</summary>
    public double Sum(string name, params string[] labels) => Family(name, labels).Sum(s => s.Value);

    /// <summary>A histogram's buckets (le, cumulative count), in the order written, checked: cumulative, ending
    /// with +Inf equal to _count.</summary>
    public List<(double Le, double Count)> Buckets(string histogram)
    {
        Assert.Equal("histogram", Type(histogram));
        var buckets = _samples.Where(s => s.Key.StartsWith(histogram + "_bucket{le=\"", StringComparison.Ordinal))
            .Select(s => (Le: ParseLe(s.Key[(histogram.Length + 12)..^2]), Count: s.Value)).OrderBy(b => b.Le).ToList();
        Assert.NotEmpty(buckets);
        for (int i = 1; i < buckets.Count; i++)
            Assert.True(buckets[i].Count >= buckets[i - 1].Count, $"{histogram} buckets are not cumulative: {string.Join(", ", buckets)}");
        Assert.Equal(double.PositiveInfinity, buckets[^1].Le);
        Assert.Equal(this[histogram + "_count"], buckets[^1].Count);
        return buckets;
    }

    private static double ParseLe(string le) =>
        le == "+Inf" ? double.PositiveInfinity : double.Parse(le, CultureInfo.InvariantCulture);
}
