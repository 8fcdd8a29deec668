namespace Plover.Cli;

/// <summary>
/// <c>plover status --admin SOCKET</c>: will query a running node over its admin Unix socket (role, term,
/// commit index, sync counters). Its own issue adds the admin socket and fills this in.
/// </summary>
internal static class StatusCommand
{
    public static int Run(ReadOnlySpan<string> args)
    {
        var cl = CommandLine.Parse("status", args, ["admin", "config", "node"]);
        cl.NoPositionals();
        Console.Error.WriteLine("plover: status: not implemented yet (the admin socket comes with its own issue)");
        return 3;
    }
}
