using System.Text;

namespace Plover.Tests.Scenarios;

/// <summary>
/// One argument of a scenario command: a bare word (<c>3</c>, <c>empty</c>: Key only), <c>key=value</c> or
/// <c>key=(v1,v2,...)</c>. A quoted word (<c>"hello world"</c>) is one bare word without its quotes.
/// </summary>
internal sealed record ScenarioArg(string Key, IReadOnlyList<string> Values)
{
    public bool IsBare => Values.Count == 0;
    public override string ToString() => IsBare ? Key : Values.Count == 1 ? $"{Key}={Values[0]}" : $"{Key}=({string.Join(",", Values)})";
}

/// <summary>
/// One command of a scenario file with its expected output. The text around it (comments, blank lines, the
/// command line itself and its input lines) is kept verbatim so that a rewrite changes only the output blocks.
/// </summary>
internal sealed class ScenarioCase
{
    public required int Line { get; init; }                    // 1-based line of the command
    public required string CommandLine { get; init; }
    public required string Command { get; init; }
    public required IReadOnlyList<ScenarioArg> Args { get; init; }
    public required IReadOnlyList<string> Input { get; init; }  // lines between the command and "----"
    public required IReadOnlyList<string> Leading { get; init; } // comments and blank lines before the command
    public required string Expected { get; init; }
    public string? Actual { get; set; }

    public override string ToString() => CommandLine;
}

/// <summary>
/// The data-driven test file format (the one etcd's raft library uses through cockroachdb/datadriven; this is
/// our own reading of it):
/// <code>
/// # a comment (only between commands)
/// command arg key=value key=(a,b)
/// optional input lines
/// ----
/// expected output, up to the next blank line
///
/// next-command
/// ----
/// ----
/// expected output that contains blank lines
///
/// is closed by two separator lines
/// ----
/// ----
/// </code>
/// <see cref="Render"/> writes the file back with each case's <see cref="ScenarioCase.Actual"/> output (when
/// set) in place of the expected one; everything else is kept as it was.
/// </summary>
internal sealed class ScenarioScript
{
    private const string Separator = "----";

    public required string Path { get; init; }
    public required IReadOnlyList<ScenarioCase> Cases { get; init; }
    public required IReadOnlyList<string> Trailer { get; init; }

    public static ScenarioScript Load(string path) => Parse(File.ReadAllText(path), path);

    public static ScenarioScript Parse(string text, string path)
    {
        var lines = text.Replace("\r\n", "\n").Split('\n').ToList();
        if (lines.Count > 0 && lines[^1] == "") lines.RemoveAt(lines.Count - 1);   // the final newline
        var cases = new List<ScenarioCase>();
        var leading = new List<string>();
        int i = 0;
        while (i < lines.Count)
        {
            string line = lines[i];
            if (line.Trim().Length == 0 || line.TrimStart().StartsWith('#'))
            {
                leading.Add(line);
                i++;
                continue;
            }

            int commandLine = i + 1;
            var (command, args) = ParseCommand(line, path, commandLine);
            i++;
            var input = new List<string>();
            while (i < lines.Count && lines[i] != Separator)
            {
                if (lines[i].Trim().Length == 0)
                    throw new ScenarioSyntaxException(path, commandLine, $"'{line}' has no '{Separator}' line before the blank line at {i + 1}");
                input.Add(lines[i++]);
            }
            if (i == lines.Count) throw new ScenarioSyntaxException(path, commandLine, $"'{line}' has no '{Separator}' line");
            i++;

            var output = new List<string>();
            if (i < lines.Count && lines[i] == Separator)
            {
                // Block form: ends at two separator lines in a row.
                i++;
                while (true)
                {
                    if (i + 1 >= lines.Count)
                        throw new ScenarioSyntaxException(path, commandLine, $"the output block of '{line}' is not closed by two '{Separator}' lines");
                    if (lines[i] == Separator && lines[i + 1] == Separator) { i += 2; break; }
                    output.Add(lines[i++]);
                }
                if (i < lines.Count && lines[i].Trim().Length != 0)
                    throw new ScenarioSyntaxException(path, i + 1, "a blank line must follow an output block");
            }
            else
            {
                while (i < lines.Count && lines[i].Trim().Length != 0) output.Add(lines[i++]);
            }
            if (i < lines.Count) i++;   // the blank line that ends the case

            cases.Add(new ScenarioCase
            {
                Line = commandLine, CommandLine = line, Command = command, Args = args, Input = input,
                Leading = leading, Expected = string.Join("\n", output),
            });
            leading = new List<string>();
        }
        return new ScenarioScript { Path = path, Cases = cases, Trailer = leading };
    }

    /// <summary>The file's text with every case's actual output (or its expected one if it has none).</summary>
    public string Render()
    {
        var sb = new StringBuilder();
        foreach (var c in Cases)
        {
            foreach (var l in c.Leading) sb.Append(l).Append('\n');
            sb.Append(c.CommandLine).Append('\n');
            foreach (var l in c.Input) sb.Append(l).Append('\n');
            sb.Append(Separator).Append('\n');
            string output = Normalize(c.Actual ?? c.Expected);
            bool block = output.Split('\n').Any(l => l.Length == 0 || l == Separator);
            if (block) sb.Append(Separator).Append('\n');
            sb.Append(output).Append('\n');
            if (block) sb.Append(Separator).Append('\n').Append(Separator).Append('\n');
            sb.Append('\n');
        }
        foreach (var l in Trailer) sb.Append(l).Append('\n');
        return sb.ToString().TrimEnd('\n') + "\n";
    }

    /// <summary>Trailing spaces on each line and trailing blank lines do not count.</summary>
    public static string Normalize(string output) =>
        string.Join("\n", output.Replace("\r\n", "\n").Split('\n').Select(l => l.TrimEnd())).Trim('\n');

    /// <summary>Splits a command line into words; key=(a, b) and "quoted words" are one word each.</summary>
    internal static (string Command, List<ScenarioArg> Args) ParseCommand(string line, string path, int lineNo)
    {
        var words = new List<string>();
        int i = 0;
        while (i < line.Length)
        {
            if (char.IsWhiteSpace(line[i])) { i++; continue; }
            if (line[i] == '#') break;   // a comment after the command
            var word = new StringBuilder();
            while (i < line.Length && !char.IsWhiteSpace(line[i]))
            {
                char ch = line[i];
                if (ch == '"')
                {
                    int end = line.IndexOf('"', i + 1);
                    if (end < 0) throw new ScenarioSyntaxException(path, lineNo, "unterminated quote");
                    word.Append(line, i, end - i + 1);
                    i = end + 1;
                }
                else if (ch == '(')
                {
                    int end = line.IndexOf(')', i + 1);
                    if (end < 0) throw new ScenarioSyntaxException(path, lineNo, "unterminated '('");
                    word.Append(line, i, end - i + 1);
                    i = end + 1;
                }
                else { word.Append(ch); i++; }
            }
            words.Add(word.ToString());
        }
        if (words.Count == 0) throw new ScenarioSyntaxException(path, lineNo, "empty command");

        var args = new List<ScenarioArg>();
        foreach (var w in words.Skip(1))
        {
            if (w.StartsWith('"')) { args.Add(new ScenarioArg(w[1..^1], [])); continue; }
            int eq = w.IndexOf('=');
            if (eq <= 0) { args.Add(new ScenarioArg(w, [])); continue; }
            string key = w[..eq], value = w[(eq + 1)..];
            if (value.StartsWith('(') && value.EndsWith(')'))
                args.Add(new ScenarioArg(key, value[1..^1].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)));
            else
                args.Add(new ScenarioArg(key, [value.Trim('"')]));
        }
        return (words[0], args);
    }
}

/// <summary>The scenario file itself is malformed (not a failure of the code under test).</summary>
internal sealed class ScenarioSyntaxException(string path, int line, string message)
    : Exception($"{System.IO.Path.GetFileName(path)}:{line}: {message}");
