namespace Plover.Cli;

/// <summary>A bad command line: printed with the usage hint, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// Options of one subcommand: <c>--name value</c> (repeatable where allowed) and positional arguments.
/// Unknown options, missing values and bad numbers are UsageExceptions naming the option.
/// </summary>
internal sealed class CommandLine
{
    private readonly string _command;
    private readonly Dictionary<string, List<string>> _options = new();
    private readonly List<string> _positionals = new();

    private CommandLine(string command) => _command = command;

    public IReadOnlyList<string> Positionals => _positionals;

    /// <summary>Parses args (after the subcommand name); valued lists the options taking a value, flags those that do not.</summary>
    public static CommandLine Parse(string command, ReadOnlySpan<string> args, string[] valued, string[]? flags = null)
    {
        var cl = new CommandLine(command);
        flags ??= [];
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a.StartsWith("--", StringComparison.Ordinal))
            {
                string name = a[2..];
                string? inline = null;
                int eq = name.IndexOf('=');
                if (eq >= 0) { inline = name[(eq + 1)..]; name = name[..eq]; }
                if (flags.Contains(name))
                {
                    if (inline is not null) throw new UsageException($"{command}: option --{name} takes no value");
                    cl.Add(name, "true");
                }
                else if (valued.Contains(name))
                {
                    string? v = inline ?? (i + 1 < args.Length ? args[++i] : null);
                    if (v is null) throw new UsageException($"{command}: option --{name} needs a value");
                    cl.Add(name, v);
                }
                else throw new UsageException($"{command}: unknown option --{name}");
            }
            else cl._positionals.Add(a);
        }
        return cl;
    }

    private void Add(string name, string value)
    {
        if (!_options.TryGetValue(name, out var list)) _options[name] = list = new List<string>();
        list.Add(value);
    }

    public bool Flag(string name) => _options.ContainsKey(name);

    public string? Optional(string name)
    {
        if (!_options.TryGetValue(name, out var list)) return null;
        if (list.Count > 1) throw new UsageException($"{_command}: option --{name} given {list.Count} times");
        return list[0];
    }

    public string Required(string name) => Optional(name) ?? throw new UsageException($"{_command}: missing --{name}");

    public IReadOnlyList<string> All(string name) => _options.TryGetValue(name, out var list) ? list : [];

    public int Int(string name, int? fallback, int min = int.MinValue, int max = int.MaxValue)
    {
        string? v = Optional(name);
        if (v is null) return fallback ?? throw new UsageException($"{_command}: missing --{name}");
        if (!int.TryParse(v, out int n)) throw new UsageException($"{_command}: --{name} must be an integer, got '{v}'");
        if (n < min || n > max) throw new UsageException($"{_command}: --{name} must be in [{min}, {max}], got {n}");
        return n;
    }

    public void NoPositionals()
    {
        if (_positionals.Count > 0) throw new UsageException($"{_command}: unexpected argument '{_positionals[0]}'");
    }
}
