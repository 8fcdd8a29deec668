using System.Text.Json.Nodes;
using Plover.Config;
using Plover.Transport.Ucx;
using Xunit;

namespace Plover.Tests.Config;

/// <summary>"transport" (tcp, the default, or ucx) and the "ucx" section: parsed, and every mistake named.</summary>
public sealed class TransportConfigTests
{
    private static ClusterConfig Parse(Action<JsonObject> change)
    {
        var json = ConfigFixture.Valid();
        change(json);
        return ClusterConfig.Parse(json.ToJsonString(), "/etc/plover");
    }

    private static string Refuse(Action<JsonObject> change) => Assert.Throws<ConfigException>(() => Parse(change)).Message;

    [Fact]
    public void Tcp_is_the_default_and_ucx_takes_its_progress_mode_and_variables()
    {
        Assert.Null(Parse(_ => { }).Ucx);
        Assert.Null(Parse(j => j["transport"] = "tcp").Ucx);
        var plain = Parse(j => j["transport"] = "ucx").Ucx!;
        Assert.Equal(UcxProgress.Event, plain.Progress);
        Assert.Empty(plain.Variables);
        var tuned = Parse(j =>
        {
            j["transport"] = "ucx";
            j["ucx"] = new JsonObject { ["progress"] = "busy", ["oneSided"] = true, ["pagePuts"] = true,
                                        ["env"] = new JsonObject { ["UCX_TLS"] = "rc,sm", ["UCX_NET_DEVICES"] = "mlx5_0:1" } };
        }).Ucx!;
        Assert.False(plain.OneSided);
        Assert.True(tuned.OneSided);
        Assert.False(plain.PagePuts);
        Assert.True(tuned.PagePuts);
        Assert.Equal(UcxProgress.Busy, tuned.Progress);
        Assert.Equal("rc,sm", tuned.Variables["UCX_TLS"]);
        Assert.Equal("mlx5_0:1", tuned.Variables["UCX_NET_DEVICES"]);
    }

    [Fact]
    public void Mistakes_are_named()
    {
        Assert.Equal("config: transport: unknown transport 'rdma' (expected tcp, the default, or ucx)", Refuse(j => j["transport"] = "rdma"));
        Assert.StartsWith("config: ucx: given, but transport is tcp", Refuse(j => j["ucx"] = new JsonObject()));
        Assert.StartsWith("config: ucx.progress: unknown progress mode 'spin'",
            Refuse(j => { j["transport"] = "ucx"; j["ucx"] = new JsonObject { ["progress"] = "spin" }; }));
        Assert.StartsWith("config: ucx.env.TLS: not a UCX variable",
            Refuse(j => { j["transport"] = "ucx"; j["ucx"] = new JsonObject { ["env"] = new JsonObject { ["TLS"] = "tcp" } }; }));
        Assert.Equal("config: ucx.env.UCX_TLS: empty value",
            Refuse(j => { j["transport"] = "ucx"; j["ucx"] = new JsonObject { ["env"] = new JsonObject { ["UCX_TLS"] = "" } }; }));
    }

    [Transport.Ucx.UcxFact]
    public void A_value_ucx_cannot_parse_is_refused_when_the_worker_starts()
    {
        var e = Assert.Throws<IOException>(() => new UcxWorker(new UcxSettings(UcxProgress.Event,
            new Dictionary<string, string> { ["UCX_RNDV_THRESH"] = "lots" }), "bad"));
        Assert.Contains("UCX_RNDV_THRESH=lots", e.Message);
    }
}
