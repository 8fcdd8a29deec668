namespace Plover.Config;

/// <summary>What a node does: the primary and the backup run a VM, the witness only votes and stores the log.</summary>
public enum NodeRole
{
    Primary,
    Backup,
    Witness,
}

public static class NodeRoles
{
    /// <summary>The role's name as written in the config and on QEMU's command line.</summary>
    public static string Name(this NodeRole role) => role switch
    {
        NodeRole.Primary => "primary",
        NodeRole.Backup => "backup",
        NodeRole.Witness => "witness",
        _ => role.ToString(),
    };

    /// <summary>Parses "primary", "backup" or "witness" (exact, lower case).</summary>
    public static bool TryParse(string? text, out NodeRole role)
    {
        switch (text)
        {
            case "primary": role = NodeRole.Primary; return true;
            case "backup": role = NodeRole.Backup; return true;
            case "witness": role = NodeRole.Witness; return true;
            default: role = default; return false;
        }
    }
}
