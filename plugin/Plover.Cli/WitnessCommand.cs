using Plover.Config;
using Plover.Consensus;

namespace Plover.Cli;

/// <summary>
/// <c>plover witness --config FILE --node ID</c>: the third member of the cluster. It votes and stores the log
/// (in memory, in the consensus core, truncated as the leader compacts), runs no VM, logs role changes, and exits
/// 0 on SIGTERM/SIGINT.
/// </summary>
internal static class WitnessCommand
{
    public static int Run(ReadOnlySpan<string> args)
    {
        var cl = CommandLine.Parse("witness", args, ["config", "node"]);
        cl.NoPositionals();
        using var host = NodeHost.FromCommandLine(cl, "witness");
        if (host.Self.Role != NodeRole.Witness)
            throw new UsageException($"witness: node {host.Self.Id} is the {host.Self.Role.Name()} in the config, not the witness");
        long committed = 0, inputs = 0;
        host.Driver.Committed = e =>
        {
            committed++;
            if (e.Type == EntryType.Input) inputs++;
        };
        host.Driver.StateChanged = s =>
            NodeHost.Log($"witness {host.Self.Id}: leader {(s.LeaderId == 0 ? "unknown" : s.LeaderId.ToString())}, ballot {s.Ballot} (term {s.Ballot.Round})");
        host.Start(waitForPeersMs: 0);
        if (host.WaitForMajority() is { } problem)
        {
            NodeHost.Log($"witness {host.Self.Id}: {problem}");
            Console.Error.WriteLine($"plover: witness: {problem}");
            return 1;
        }
        host.WaitForStop();
        var d = host.Driver;
        d.Dispose();   // stop the consensus thread first, so the counters below are final
        NodeHost.Log($"witness {host.Self.Id}: stopping; committed index {d.CommitIndex}, last index {d.LastIndex}, " +
                     $"{committed} entries applied ({inputs} inputs), term {d.Term}");
        Console.WriteLine($"WITNESS node={host.Self.Id} commit={d.CommitIndex} last={d.LastIndex} applied={committed} inputs={inputs} term={d.Term}");
        return d.Failure is null ? 0 : 1;
    }
}
