using System.Text.Json;
using System.Text.Json.Serialization;

namespace Plover.Config;

// The config file exactly as written: every member nullable so that "missing" is told apart from "wrong", and
// ConfigValidator turns it into a ClusterConfig. Unknown properties are errors (UnmappedMemberHandling.Disallow).

internal sealed class RawConfig
{
    public string? Cluster { get; set; }
    public string? KeyFile { get; set; }
    public bool? Encrypt { get; set; }
    public List<RawObserver?>? Observers { get; set; }
    public string? Mode { get; set; }
    public List<RawNode?>? Nodes { get; set; }
    public RawTimeouts? Timeouts { get; set; }
    public RawSync? Sync { get; set; }
    public RawHashing? Hashing { get; set; }
    public string? Transport { get; set; }
    public RawUcx? Ucx { get; set; }
}

internal sealed class RawUcx
{
    public string? Progress { get; set; }
    public bool? OneSided { get; set; }
    public bool? PagePuts { get; set; }
    public Dictionary<string, string?>? Env { get; set; }
}

internal sealed class RawNode
{
    public int? Id { get; set; }
    public string? Role { get; set; }
    public string? Address { get; set; }
    public string? Admin { get; set; }
    public string? Metrics { get; set; }
    public string? PublicKey { get; set; }
    public string? PreviousPublicKey { get; set; }
    public string? KeyFile { get; set; }
}

internal sealed class RawObserver
{
    public string? Name { get; set; }
    public string? PublicKey { get; set; }
}

internal sealed class RawTimeouts
{
    public double? HeartbeatMs { get; set; }
    public double? ElectionMinMs { get; set; }
    public double? ElectionMaxMs { get; set; }
    public int? StartupMs { get; set; }
}

internal sealed class RawSync
{
    public int? IdleWindowUs { get; set; }
    public int? IdleThresholdUs { get; set; }
    public int? IdleWindows { get; set; }
    public int? IdleWindowsWithOutput { get; set; }
    public int? MaxEpochMs { get; set; }
    public int? TimeoutMs { get; set; }
    public string? Mode { get; set; }
    public bool? EarlyResume { get; set; }
    public string? ResumePoint { get; set; }
    public bool? DeviceStateDelta { get; set; }
    public int? DiskChunkMiB { get; set; }
    public int? SubBlockBytes { get; set; }
    public int? SubBlockHashBytes { get; set; }
    public RawAdaptive? Adaptive { get; set; }
}

internal sealed class RawAdaptive
{
    public int? Window { get; set; }
    public double? SwitchAbove { get; set; }
    public int? ProbeEvery { get; set; }
    public int? MaxProbeEvery { get; set; }
}

internal sealed class RawHashing
{
    public int? Threads { get; set; }
}

/// <summary>Source-generated (reflection-free, NativeAOT-safe) serializer for the config file.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = false,
    NumberHandling = JsonNumberHandling.Strict)]
[JsonSerializable(typeof(RawConfig))]
internal sealed partial class ConfigJsonContext : JsonSerializerContext;
