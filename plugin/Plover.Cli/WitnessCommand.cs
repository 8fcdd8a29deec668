using System.Runtime.InteropServices;
using Plover.Node;

namespace Plover.Cli;

/// <summary>
/// <c>plover witness --config FILE --node ID</c>: the third member of the cluster (<see cref="WitnessNode"/>). It
/// votes and stores the log, runs no VM, logs role changes, exits 0 on SIGTERM/SIGINT, and exits 1 with the reason
/// when it finds no majority within timeouts.startupMs.
/// </summary>
internal static class WitnessCommand
{
    public static int Run(ReadOnlySpan<string> args)
    {
        var cl = CommandLine.Parse("witness", args, ["config", "node"]);
        cl.NoPositionals();
        string path = cl.Required("config");
        int id = cl.Int("node", null, 1);
        if (!File.Exists(path)) throw new UsageException($"witness: config file '{path}' does not exist");
        var config = Plover.Config.ClusterConfig.Load(path);
        WitnessNode witness;
        try { witness = new WitnessNode(config, id, NodeHost.Log); }
        catch (ArgumentException e) { throw new UsageException($"witness: {e.Message}"); }
        using var stop = new ManualResetEventSlim();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Set(); });
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Set(); });
        using (witness)
        {
            if (witness.Start(() => stop.IsSet) is { } problem)
            {
                if (stop.IsSet) return 0;
                NodeHost.Log($"witness {id}: {problem}");
                Console.Error.WriteLine($"plover: witness: {problem}");
                return 1;
            }
            NodeHost.Log($"witness {id}: {Plover.Platform.GcReport.Describe()}");
            stop.Wait();
            var d = witness.Driver!;
            d.Dispose();   // stop the consensus thread first, so the counters below are final
            NodeHost.Log($"witness {id}: stopping; committed index {d.CommitIndex}, last index {d.LastIndex}, " +
                         $"{witness.Committed} entries applied ({witness.Inputs} inputs), term {d.Term}");
            Console.WriteLine($"WITNESS node={id} commit={d.CommitIndex} last={d.LastIndex} applied={witness.Committed} " +
                              $"inputs={witness.Inputs} term={d.Term}");
            return d.Failure is null ? 0 : 1;
        }
    }
}
