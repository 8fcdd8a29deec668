using System.Globalization;
using Plover.Config;
using Plover.Interop;

namespace Plover.Native.Host;

/// <summary>What plover_qemu_init checks before it starts anything; each refusal is an InitException whose
/// message QEMU prints before refusing to start.</summary>
internal static unsafe class InitCheck
{
    public sealed record Checked(QemuHost Host, ClusterConfig Config, NodeConfig Node, string ConfigPath);

    public static Checked Run(PloverHostApi* api, PloverHooks* hooks)
    {
        if (api == null)
            throw new InitException(Errno.EINVAL, "host API pointer is NULL");
        if (hooks == null)
            throw new InitException(Errno.EINVAL, "hooks pointer is NULL");
        // abi_major/abi_minor sit in the first 8 bytes, which every version has.
        if (api->struct_size < 8)
            throw new InitException(Errno.EINVAL, $"host struct_size {api->struct_size} is too small to hold a version");
        if (api->abi_major != PloverAbi.Major)
            throw new InitException(Errno.EPROTO,
                $"ABI major mismatch: QEMU offers {api->abi_major}.{api->abi_minor}, the library needs " +
                $"{PloverAbi.Major}.x (built for {PloverAbi.Major}.{PloverAbi.Minor})");
        if (api->struct_size < sizeof(PloverHostApi))
            throw new InitException(Errno.EINVAL,
                $"host PloverHostApi struct_size {api->struct_size} is smaller than the {sizeof(PloverHostApi)} " +
                $"bytes of ABI {PloverAbi.Major}.{PloverAbi.Minor}");
        if (api->log == null || api->schedule_main == null)
            throw new InitException(Errno.EINVAL, "the host API has no log or schedule_main function");

        var host = new QemuHost(api);

        string role = host.Role switch
        {
            null or "" => throw new InitException(Errno.EINVAL, "role= is missing (primary or backup)"),
            "primary" or "backup" => host.Role,
            "witness" => throw new InitException(Errno.EINVAL,
                "role=witness is refused: a witness runs no VM (run the plover witness command instead)"),
            _ => throw new InitException(Errno.EINVAL, $"role='{host.Role}' is unknown (primary or backup)"),
        };

        if (string.IsNullOrEmpty(host.Node))
            throw new InitException(Errno.EINVAL, "node= is missing (the node's id in the config)");
        if (!int.TryParse(host.Node, NumberStyles.None, CultureInfo.InvariantCulture, out int nodeId) || nodeId <= 0)
            throw new InitException(Errno.EINVAL, $"node='{host.Node}' is not a positive decimal node id");

        if (string.IsNullOrEmpty(host.ConfigPath))
            throw new InitException(Errno.EINVAL, "config= is missing (the cluster config file)");
        ClusterConfig config;
        try
        {
            config = ClusterConfig.Load(host.ConfigPath);
        }
        catch (ConfigException e)
        {
            bool missing = !File.Exists(host.ConfigPath);
            throw new InitException(missing ? Errno.ENOENT : Errno.EINVAL, $"bad config: {e.Message}");
        }

        NodeConfig node = config.FindNode(nodeId) ?? throw new InitException(Errno.EINVAL,
            $"node={nodeId} is not in {config.Cluster} config {Path.GetFullPath(host.ConfigPath)} " +
            $"(ids: {string.Join(", ", config.Nodes.Select(n => n.Id))})");
        if (node.Role.Name() != role)
            throw new InitException(Errno.EINVAL,
                $"role={role} but node {nodeId} is the {node.Role.Name()} in {Path.GetFullPath(host.ConfigPath)}");
        try
        {
            config.LoadIdentityKey(nodeId);
        }
        catch (ConfigException e)
        {
            throw new InitException(Errno.EINVAL, $"bad config: {e.Message}");
        }
        return new Checked(host, config, node, Path.GetFullPath(host.ConfigPath));
    }
}
