using Plover.Config;

namespace Plover.Cli;

/// <summary>The <c>plover</c> command: dispatches to one subcommand; usage and config errors exit with 2.</summary>
internal static class Program
{
    private const string Usage = """
        usage: plover COMMAND [options]

          witness --config FILE --node ID
              Run a witness: votes and stores the consensus log in memory, no VM. Stops on SIGTERM/SIGINT.
          keygen FILE
              Write a new P-256 identity key pair (for a node or an observer): the private key to FILE (mode 0600;
              refuses to overwrite), the public key (base64, for the config's "publicKey") to stdout.
          bench-node --config FILE --node ID [--workload SPEC]... [--json FILE] [--report-ms MS]
                     [--checkpoint-every N] [--connect-timeout-ms MS]
              Run a consensus node without a VM. Whichever replica leads runs the next workload without a
              committed result (results commit to the log, so a new leader resumes where the old one stopped):
                SPEC = NAME:consensus:SIZE:CLIENTS:WINDOW:COUNT   COUNT inputs of SIZE bytes (>= 24) from CLIENTS
                       threads with WINDOW proposals outstanding each; commit latency and throughput
                SPEC = NAME:ping:SIZE:COUNT                       transport round trip to the backup, same framing
              Prints ROLE, STATUS, CHECKPOINT, RESULT and DONE lines on stdout (see BenchNodeCommand.cs).
          status --config FILE [--key FILE] [--json] [--timeout-ms MS]
              Ask every node (over its consensus port, with an observer's key: --key, default the config's keyFile)
              for its role, term, commit index, lag
              and last sync. Exit code 0: a primary leads with a synced backup and every node can vote; 1: the
              cluster is unprotected (no primary, no synced backup, or a node unreachable, starting or recovering).
          help
        """;

    public static int Main(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }
        var rest = args.AsSpan(1);
        try
        {
            return args[0] switch
            {
                "witness" => WitnessCommand.Run(rest),
                "keygen" => KeygenCommand.Run(rest),
                "bench-node" => BenchNodeCommand.Run(rest),
                "status" => StatusCommand.Run(rest),
                "help" or "--help" or "-h" => PrintUsage(),
                _ => throw new UsageException($"unknown command '{args[0]}'"),
            };
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"plover: {e.Message}");
            Console.Error.WriteLine("run 'plover help' for usage");
            return 2;
        }
        catch (ConfigException e)
        {
            Console.Error.WriteLine($"plover: config: {e.Message}");
            return 2;
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"plover: {e.Message}");
            return 1;
        }
    }

    private static int PrintUsage()
    {
        Console.WriteLine(Usage);
        return 0;
    }
}
