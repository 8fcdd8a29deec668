using SharpFuzz;

namespace Plover.Fuzz;

/// <summary>
/// <code>
///   Plover.Fuzz TARGET              run TARGET under afl-fuzz (SharpFuzz's in-process loop; once on stdin otherwise)
///   Plover.Fuzz replay TARGET FILE.. run files through TARGET, print what each did (exit 1 if any failed)
///   Plover.Fuzz seeds DIR           write every target's seed inputs to DIR/TARGET/seed-*
///   Plover.Fuzz list                the targets
/// </code>
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] == "list")
        {
            foreach (var t in FuzzTargets.Create()) Console.WriteLine($"{t.Name,-12} {t.Description}");
            return args.Length == 0 ? 2 : 0;
        }
        if (args[0] == "seeds" && args.Length == 2) return WriteSeeds(args[1]);
        if (args[0] == "replay" && args.Length >= 3) return Replay(Target(args[1]), args[2..]);
        var target = Target(args[0]);
        Fuzzer.Run(stream =>
        {
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            target.Run(copy.GetBuffer().AsSpan(0, (int)copy.Length));
        });
        return 0;
    }

    private static IFuzzTarget Target(string name) =>
        FuzzTargets.Find(name) ?? throw new ArgumentException($"no fuzz target '{name}' (have: {string.Join(", ", FuzzTargets.Create().Select(t => t.Name))})");

    private static int WriteSeeds(string dir)
    {
        foreach (var t in FuzzTargets.Create())
        {
            Directory.CreateDirectory(Path.Combine(dir, t.Name));
            foreach (var (name, data) in t.Seeds()) File.WriteAllBytes(Path.Combine(dir, t.Name, "seed-" + name), data);
        }
        return 0;
    }

    private static int Replay(IFuzzTarget target, string[] files)
    {
        int failed = 0;
        foreach (string file in files)
        {
            try
            {
                target.Run(File.ReadAllBytes(file));
                Console.WriteLine($"ok      {file}: {target.LastOutcome}");
            }
            catch (Exception e)
            {
                failed++;
                Console.WriteLine($"FAILED  {file}: {e}");
            }
        }
        return failed == 0 ? 0 : 1;
    }
}
