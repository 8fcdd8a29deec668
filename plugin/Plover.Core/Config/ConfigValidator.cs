using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Plover.Config;

/// <summary>Turns the config text into a validated ClusterConfig, or throws ConfigException naming the field and
/// the problem. Everything is checked here except the private key files (ClusterConfig.LoadIdentityKey).</summary>
internal sealed partial class ConfigValidator
{
    private const int UnixSocketPathMax = 107; // sockaddr_un.sun_path is 108 bytes with the NUL

    private readonly string _source;
    private readonly string _baseDir;

    private ConfigValidator(string source, string baseDir)
    {
        _source = source;
        _baseDir = baseDir;
    }

    public static ClusterConfig Validate(string json, string baseDir, string source) =>
        new ConfigValidator(source, baseDir).Validate(json);

    private ConfigException Error(string field, string problem) => new($"{_source}: {field}: {problem}");

    private ClusterConfig Validate(string json)
    {
        RawConfig raw = Deserialize(json);
        string cluster = RequireText(raw.Cluster, "cluster");
        string? keyFile = raw.KeyFile == null ? null : Path.GetFullPath(RequireText(raw.KeyFile, "keyFile"), _baseDir);

        if (raw.Nodes == null)
            throw Error("nodes", "missing (a list of 3 nodes: primary, backup, witness)");
        var nodes = new List<NodeConfig>();
        for (int i = 0; i < raw.Nodes.Count; i++)
            nodes.Add(ValidateNode(raw.Nodes[i], $"nodes[{i}]", nodes));
        foreach (NodeRole role in Enum.GetValues<NodeRole>())
        {
            var holders = nodes.Where(n => n.Role == role).ToList();
            if (holders.Count == 0)
                throw Error("nodes", $"no {role.Name()} (exactly one primary, one backup and one witness are required)");
            if (holders.Count > 1)
                throw Error("nodes", $"{holders.Count} nodes are {role.Name()} (ids " +
                                     $"{string.Join(", ", holders.Select(n => n.Id))}); exactly one is allowed");
        }
        for (int i = 0; i < nodes.Count; i++)
            CheckMetricsClashes(nodes, i);
        if (keyFile == null && nodes.FindIndex(n => n.KeyFile == null) is var without and >= 0)
            throw Error("keyFile", $"missing (nodes[{without}] has no keyFile of its own)");
        var observers = ValidateObservers(raw.Observers, nodes);
        return new ClusterConfig(cluster, keyFile, nodes, ValidateTimeouts(raw.Timeouts), ValidateSync(raw.Sync),
            ValidateHashing(raw.Hashing), ValidateMode(raw.Mode), observers, raw.Encrypt ?? true)
        { Ucx = ValidateTransport(raw.Transport, raw.Ucx) };
    }

    private Transport.Ucx.UcxSettings? ValidateTransport(string? transport, RawUcx? ucx)
    {
        if (transport is null or "tcp")
        {
            if (ucx != null) throw Error("ucx", "given, but transport is tcp (set \"transport\": \"ucx\" to use it)");
            return null;
        }
        if (transport != "ucx") throw Error("transport", $"unknown transport '{transport}' (expected tcp, the default, or ucx)");
        var progress = ucx?.Progress switch
        {
            null or "event" => Transport.Ucx.UcxProgress.Event,
            "busy" => Transport.Ucx.UcxProgress.Busy,
            var p => throw Error("ucx.progress", $"unknown progress mode '{p}' (expected event, the default: sleep on the " +
                                                 "worker's event fd, or busy: poll on a dedicated core)"),
        };
        var env = new Dictionary<string, string>();
        foreach (var (key, value) in ucx?.Env ?? new())
        {
            if (!key.StartsWith("UCX_", StringComparison.Ordinal) || key.Length == 4 || !key.All(c => c is (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '_'))
                throw Error($"ucx.env.{key}", "not a UCX variable (expected UCX_ and capitals, e.g. UCX_TLS)");
            if (string.IsNullOrEmpty(value)) throw Error($"ucx.env.{key}", "empty value");
            env[key] = value;
        }
        return new Transport.Ucx.UcxSettings(progress, env, ucx?.OneSided ?? false, ucx?.PagePuts ?? false);
    }

    private byte[] ValidatePublicKey(string? text, string field)
    {
        var key = Transport.IdentityKey.ParsePublicKey(RequireText(text, field), out string? problem);
        return key ?? throw Error(field, problem!);
    }

    private List<ObserverConfig> ValidateObservers(List<RawObserver?>? raw, List<NodeConfig> nodes)
    {
        var observers = new List<ObserverConfig>();
        if (raw == null) return observers;
        for (int i = 0; i < raw.Count; i++)
        {
            string at = $"observers[{i}]";
            if (raw[i] is not { } o) throw Error(at, "null, expected an observer object");
            string name = RequireText(o.Name, $"{at}.name");
            if (observers.FindIndex(x => x.Name == name) is var same and >= 0)
                throw Error($"{at}.name", $"duplicate name '{name}' (observers[{same}] has it too)");
            byte[] key = ValidatePublicKey(o.PublicKey, $"{at}.publicKey");
            // An observer sharing a node's key could act as that node: every identity must be its own.
            if (nodes.FindIndex(n => n.PublicKey.AsSpan().SequenceEqual(key)) is var node and >= 0)
                throw Error($"{at}.publicKey", $"is the public key of nodes[{node}]; an observer needs a key of its own (plover keygen)");
            if (observers.FindIndex(x => x.PublicKey.AsSpan().SequenceEqual(key)) is var twin and >= 0)
                throw Error($"{at}.publicKey", $"is also the public key of observers[{twin}]");
            observers.Add(new ObserverConfig(name, key));
        }
        return observers;
    }

    private RawConfig Deserialize(string json)
    {
        try
        {
            return JsonSerializer.Deserialize(json, ConfigJsonContext.Default.RawConfig)
                ?? throw new ConfigException($"{_source}: the document is null, not a config object");
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{_source}: {JsonProblem(e)}", e);
        }
    }

    // System.Text.Json's wording made readable: "$.nodes[0].rol: unknown property 'rol' (line 3, position 7)".
    private static string JsonProblem(JsonException e)
    {
        string where = e.LineNumber is long line
            ? $"line {line + 1}, position {(e.BytePositionInLine ?? 0) + 1}"
            : "an unknown position";
        string path = string.IsNullOrEmpty(e.Path) ? "$" : e.Path;
        string message = e.Message;
        int cut = message.IndexOf(" Path: ", StringComparison.Ordinal);
        if (cut >= 0)
            message = message[..cut];
        if (UnknownProperty().Match(message) is { Success: true } unknown)
            return $"{path}: unknown property '{unknown.Groups[1].Value}' ({where})";
        if (WrongType().Match(message) is { Success: true } wrong)
            return $"{path}: wrong type, expected {Describe(wrong.Groups[1].Value)} ({where})";
        return $"malformed JSON at {where} ({path}): {message.TrimEnd('.')}";
    }

    [GeneratedRegex(@"The JSON property '(.*)' could not be mapped")]
    private static partial Regex UnknownProperty();

    [GeneratedRegex(@"The JSON value could not be converted to ([\w.`\[\]]+)")]
    private static partial Regex WrongType();

    private static string Describe(string clrType) =>
        clrType.Contains("Int32") ? "an integer" :
        clrType.Contains("Double") ? "a number" :
        clrType.Contains("String") ? "a string" :
        clrType.Contains("List") ? "an array" : "an object";

    private string RequireText(string? value, string field)
    {
        if (value == null)
            throw Error(field, "missing");
        if (string.IsNullOrWhiteSpace(value))
            throw Error(field, "empty");
        return value;
    }

    private NodeConfig ValidateNode(RawNode? raw, string at, List<NodeConfig> earlier)
    {
        if (raw == null)
            throw Error(at, "null, expected a node object");
        if (raw.Id is not int id)
            throw Error($"{at}.id", "missing");
        if (id <= 0)
            throw Error($"{at}.id", $"must be a positive integer (got {id})");
        if (earlier.FindIndex(n => n.Id == id) is var same and >= 0)
            throw Error($"{at}.id", $"duplicate id {id} (nodes[{same}] has it too)");

        string roleText = RequireText(raw.Role, $"{at}.role");
        if (!NodeRoles.TryParse(roleText, out NodeRole role))
            throw Error($"{at}.role", $"unknown role '{roleText}' (expected primary, backup or witness)");

        string address = RequireText(raw.Address, $"{at}.address");
        IPEndPoint endpoint = ParseAddress(address, $"{at}.address");
        if (earlier.FirstOrDefault(n => n.Endpoint.Equals(endpoint)) is { } clash)
            throw Error($"{at}.address", $"{address} is also the address of node {clash.Id}");

        string? admin = null;
        if (raw.Admin != null)
        {
            admin = Path.GetFullPath(RequireText(raw.Admin, $"{at}.admin"), _baseDir);
            int bytes = Encoding.UTF8.GetByteCount(admin);
            if (bytes > UnixSocketPathMax)
                throw Error($"{at}.admin", $"socket path '{admin}' is {bytes} bytes; a Unix socket path holds at most " +
                                           $"{UnixSocketPathMax}");
            if (earlier.FirstOrDefault(n => n.Admin == admin) is { } shared)
                throw Error($"{at}.admin", $"'{admin}' is also the admin socket of node {shared.Id}");
        }
        string? metricsAddress = null;
        IPEndPoint? metrics = null;
        if (raw.Metrics != null)
        {
            metricsAddress = RequireText(raw.Metrics, $"{at}.metrics");
            metrics = ParseAddress(metricsAddress, $"{at}.metrics");
        }
        byte[] publicKey = ValidatePublicKey(raw.PublicKey, $"{at}.publicKey");
        if (earlier.FindIndex(n => n.PublicKey.AsSpan().SequenceEqual(publicKey)) is var twin and >= 0)
            throw Error($"{at}.publicKey", $"is also the public key of nodes[{twin}]; each node needs a key of its own (plover keygen)");
        string? keyFile = raw.KeyFile == null ? null : Path.GetFullPath(RequireText(raw.KeyFile, $"{at}.keyFile"), _baseDir);
        byte[]? previous = raw.PreviousPublicKey == null ? null : ValidatePublicKey(raw.PreviousPublicKey, $"{at}.previousPublicKey");
        return new NodeConfig(id, role, address, endpoint, admin, metricsAddress, metrics, publicKey, keyFile, previous);
    }

    /// <summary>A node's metrics endpoint must not take a port that a node listens on for the cluster: any node's
    /// consensus address, a replica's sync link (its address's port + 1), another node's metrics. A wildcard
    /// (0.0.0.0, [::]) is compared by port with the node's own addresses only (they are on the same host; other
    /// nodes may well use the same wildcard address on theirs).</summary>
    private void CheckMetricsClashes(List<NodeConfig> nodes, int i)
    {
        NodeConfig node = nodes[i];
        if (node.Metrics is not { } m)
            return;
        string field = $"nodes[{i}].metrics";
        bool wildcard = m.Address.Equals(IPAddress.Any) || m.Address.Equals(IPAddress.IPv6Any);
        foreach (NodeConfig other in nodes)
        {
            bool own = other.Id == node.Id;
            if (m.Equals(other.Endpoint) || (own && wildcard && m.Port == other.Endpoint.Port))
                throw Error(field, $"{node.MetricsAddress} is also the consensus address of node {other.Id} ({other.Address})");
            if (other.Role != NodeRole.Witness && other.Endpoint.Port < 65535)
            {
                var sync = new IPEndPoint(other.Endpoint.Address, other.Endpoint.Port + 1);
                if (m.Equals(sync) || (own && wildcard && m.Port == sync.Port))
                    throw Error(field, $"{node.MetricsAddress} is the sync link address of node {other.Id} (its address " +
                                       $"{other.Address} with the port + 1)");
            }
        }
        // against the nodes before it (so the later node is named), and not between wildcards (on different hosts)
        for (int j = 0; j < i; j++)
            if (!wildcard && nodes[j].Metrics is { } theirs && m.Equals(theirs))
                throw Error(field, $"{node.MetricsAddress} is also the metrics address of node {nodes[j].Id}");
    }

    /// <summary>"ipv4:port", "[ipv6]:port" or "localhost:port"; host names are not resolved.</summary>
    private IPEndPoint ParseAddress(string address, string field)
    {
        int colon = address.LastIndexOf(':');
        if (colon <= 0 || colon == address.Length - 1)
            throw Error(field, $"'{address}' is not host:port");
        string host = address[..colon];
        string portText = address[(colon + 1)..];
        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out int port))
            throw Error(field, $"port '{portText}' in '{address}' is not a number");
        if (port < 1 || port > 65535)
            throw Error(field, $"port {port} in '{address}' is out of range 1..65535");

        if (host == "localhost")
            return new IPEndPoint(IPAddress.Loopback, port);
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            if (IPAddress.TryParse(host[1..^1], out IPAddress? v6) && v6.AddressFamily == AddressFamily.InterNetworkV6)
                return new IPEndPoint(v6, port);
            throw Error(field, $"'{host}' in '{address}' is not an IPv6 address");
        }
        if (host.Contains(':'))
            throw Error(field, $"'{address}': an IPv6 address must be written [addr]:port");
        // IPAddress.TryParse also accepts "1" or "1.2"; a config wants the dotted quad.
        if (host.Count(c => c == '.') == 3 && IPAddress.TryParse(host, out IPAddress? v4) &&
            v4.AddressFamily == AddressFamily.InterNetwork)
            return new IPEndPoint(v4, port);
        throw Error(field, $"host '{host}' in '{address}' is not an IPv4 address, [IPv6] address or localhost " +
                           "(names are not resolved)");
    }

    private TimeoutConfig ValidateTimeouts(RawTimeouts? raw)
    {
        TimeoutConfig d = TimeoutConfig.Default;
        if (raw == null)
            return d;
        double hb = Positive(raw.HeartbeatMs ?? d.HeartbeatMs, "timeouts.heartbeatMs");
        double min = Positive(raw.ElectionMinMs ?? d.ElectionMinMs, "timeouts.electionMinMs");
        double max = Positive(raw.ElectionMaxMs ?? d.ElectionMaxMs, "timeouts.electionMaxMs");
        if (min > max)
            throw Error("timeouts.electionMinMs", $"{min} is greater than timeouts.electionMaxMs {max}");
        if (hb >= min)
            throw Error("timeouts.heartbeatMs", $"{hb} must be less than timeouts.electionMinMs {min}");
        int startup = Positive(raw.StartupMs ?? d.StartupMs, "timeouts.startupMs");
        return new TimeoutConfig(hb, min, max) { StartupMs = startup };
    }

    private SyncConfig ValidateSync(RawSync? raw)
    {
        SyncConfig d = SyncConfig.Default;
        if (raw == null)
            return d;
        int window = Positive(raw.IdleWindowUs ?? d.IdleWindowUs, "sync.idleWindowUs");
        int threshold = Positive(raw.IdleThresholdUs ?? d.IdleThresholdUs, "sync.idleThresholdUs");
        int windows = Positive(raw.IdleWindows ?? d.IdleWindows, "sync.idleWindows");
        int withOutput = Positive(raw.IdleWindowsWithOutput ?? Math.Min(d.IdleWindowsWithOutput, windows), "sync.idleWindowsWithOutput");
        if (withOutput > windows)
            throw Error("sync.idleWindowsWithOutput", $"{withOutput} is greater than sync.idleWindows {windows}");
        int maxEpoch = Positive(raw.MaxEpochMs ?? d.MaxEpochMs, "sync.maxEpochMs");
        int timeout = Positive(raw.TimeoutMs ?? d.TimeoutMs, "sync.timeoutMs");
        if (threshold > window)
            throw Error("sync.idleThresholdUs", $"{threshold} is greater than sync.idleWindowUs {window}");
        var mode = ValidateSyncMode(raw.Mode);
        int diskChunk = Positive(raw.DiskChunkMiB ?? d.DiskChunkMiB, "sync.diskChunkMiB");
        if (diskChunk > 1024)
            throw Error("sync.diskChunkMiB", $"{diskChunk} is more than 1024 (a backup holds up to two chunks)");
        int subBlock = raw.SubBlockBytes ?? d.SubBlockBytes;
        if (subBlock != 0 && !Sync.SyncProtocol.IsValidSubBlockSize(subBlock))
            throw Error("sync.subBlockBytes", $"{subBlock} is not 0 (whole pages) or a power of two from {Sync.SyncProtocol.MinSubBlockBytes} " +
                                              $"to {Sync.SyncProtocol.MaxSubBlockBytes}");
        int subBlockHash = raw.SubBlockHashBytes ?? d.SubBlockHashBytes;
        if (!Sync.SyncProtocol.IsValidSubBlockHashBytes(subBlockHash))
            throw Error("sync.subBlockHashBytes", $"{subBlockHash} is not 1, 2, 4 or 8");
        return new SyncConfig(window, threshold, windows, maxEpoch)
            { TimeoutMs = timeout, IdleWindowsWithOutput = withOutput, Mode = mode, EarlyResume = raw.EarlyResume ?? d.EarlyResume,
              ResumePoint = ValidateResumePoint(raw.ResumePoint), DeviceStateDelta = raw.DeviceStateDelta ?? d.DeviceStateDelta,
              DiskChunkMiB = diskChunk, SubBlockBytes = subBlock, SubBlockHashBytes = subBlockHash, Adaptive = ValidateAdaptive(mode, raw.Adaptive) };
    }

    private SyncMode ValidateSyncMode(string? mode) => mode switch
    {
        null or "replicate" => SyncMode.Replicate,
        "checkpoint" => SyncMode.Checkpoint,
        "adaptive" => SyncMode.Adaptive,
        _ => throw Error("sync.mode", $"unknown mode '{mode}' (expected replicate, the default, checkpoint or adaptive)"),
    };

    /// <summary>sync.adaptive: only with sync.mode adaptive (a block that would be ignored is refused).</summary>
    private Sync.AdaptiveOptions? ValidateAdaptive(SyncMode mode, RawAdaptive? raw)
    {
        if (mode != SyncMode.Adaptive)
        {
            if (raw is not null) throw Error("sync.adaptive", "is read only with \"mode\": \"adaptive\" (sync.mode is " + mode.ToString().ToLowerInvariant() + ")");
            return null;
        }
        var d = new Sync.AdaptiveOptions();
        if (raw is null) return d;
        int window = Positive(raw.Window ?? d.Window, "sync.adaptive.window");
        if (window > 1024) throw Error("sync.adaptive.window", $"{window} syncs is more than 1024");
        double above = raw.SwitchAbove ?? d.SwitchAbove;
        if (!double.IsFinite(above) || above <= 0 || above > 100)
            throw Error("sync.adaptive.switchAbove", $"{above} is not a ratio in (0, 100] (replication bytes / checkpoint bytes above which to checkpoint; 1 by default)");
        int probe = Positive(raw.ProbeEvery ?? d.ProbeEvery, "sync.adaptive.probeEvery");
        int maxProbe = Positive(raw.MaxProbeEvery ?? Math.Max(d.MaxProbeEvery, probe), "sync.adaptive.maxProbeEvery");
        if (maxProbe < probe)
            throw Error("sync.adaptive.maxProbeEvery", $"{maxProbe} is less than sync.adaptive.probeEvery {probe}");
        return new Sync.AdaptiveOptions { Window = window, SwitchAbove = above, ProbeEvery = probe, MaxProbeEvery = maxProbe };
    }

    private Sync.ResumePoint ValidateResumePoint(string? point) => point switch
    {
        null or "auto" => Sync.ResumePoint.Auto,
        "bitmaps" => Sync.ResumePoint.Bitmaps,
        "compare" => Sync.ResumePoint.Compare,
        _ => throw Error("sync.resumePoint", $"unknown point '{point}' (expected auto, the default, bitmaps or compare)"),
    };

    private LibraryMode ValidateMode(string? mode) => mode switch
    {
        null or "replicate" => LibraryMode.Replicate,
        "probe" => LibraryMode.Probe,
        _ => throw Error("mode", $"unknown mode '{mode}' (expected replicate, the default, or probe)"),
    };

    private HashingConfig ValidateHashing(RawHashing? raw)
    {
        int threads = raw?.Threads ?? HashingConfig.Default.Threads;
        if (threads < 0 || threads > HashingConfig.MaxThreads)
            throw Error("hashing.threads", $"must be 0 (all cores) to {HashingConfig.MaxThreads} (got {threads})");
        return new HashingConfig(threads);
    }

    private double Positive(double value, string field)
    {
        if (!(value > 0) || double.IsInfinity(value))
            throw Error(field, $"must be a positive number (got {value.ToString(CultureInfo.InvariantCulture)})");
        return value;
    }

    private int Positive(int value, string field)
    {
        if (value <= 0)
            throw Error(field, $"must be a positive integer (got {value})");
        return value;
    }
}
