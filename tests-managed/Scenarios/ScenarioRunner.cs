using System.Runtime.CompilerServices;
using System.Text;
using Xunit;

namespace Plover.Tests.Scenarios;

/// <summary>
/// Runs a scenario file through a command handler and compares (or, when rewriting, replaces) each command's
/// expected output. Knows nothing of what it tests: the consensus and replica scenarios each bring their own handler.
/// </summary>
internal static class ScenarioRunner
{
    /// <summary>Set to 1 to write the actual output into the files instead of comparing.</summary>
    public const string RewriteVariable = "PLOVER_REWRITE_SCENARIOS";

    public static bool Rewriting => Environment.GetEnvironmentVariable(RewriteVariable) is "1" or "true";

    /// <summary>
    /// The folder of scenario files: in the source tree when it is there (so that a rewrite lands in the files
    /// under version control and an edited file runs without a rebuild), else the copy next to the test binary.
    /// </summary>
    public static string TestDataDirectory(string folderInOutput, [CallerFilePath] string callerFile = "")
    {
        string source = Path.Combine(Path.GetDirectoryName(callerFile) ?? "", "testdata");
        if (Directory.Exists(source)) return source;
        string copied = Path.Combine(AppContext.BaseDirectory, folderInOutput);
        if (Directory.Exists(copied)) return copied;
        throw new DirectoryNotFoundException($"no scenario folder at {source} or {copied}");
    }

    /// <summary>The scenario files of a test's folder (see <see cref="TestDataDirectory"/>), by name in order, for its
    /// theory's MemberData.</summary>
    public static TheoryData<string> Files(string folderInOutput, [CallerFilePath] string callerFile = "")
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(TestDataDirectory(folderInOutput, callerFile), "*.txt").Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(f));
        return data;
    }

    /// <summary>
    /// Runs every command of the file in order. Returns null when every output matched (or the file was
    /// rewritten), else a report of each mismatch with a line diff.
    /// </summary>
    public static string? Run(string path, Func<ScenarioCase, string> handle, bool rewrite)
    {
        var script = ScenarioScript.Load(path);
        var failures = new StringBuilder();
        int mismatches = 0;
        foreach (var c in script.Cases)
        {
            string actual;
            try { actual = ScenarioScript.Normalize(handle(c)); }
            catch (ScenarioUsageException e)
            {
                throw new ScenarioSyntaxException(path, c.Line, $"'{c.CommandLine}': {e.Message}");
            }
            if (actual.Length == 0) actual = "ok";
            c.Actual = actual;
            string expected = ScenarioScript.Normalize(c.Expected);
            if (expected == actual) continue;
            mismatches++;
            failures.Append($"{Path.GetFileName(path)}:{c.Line}: {c.CommandLine}\n");
            failures.Append("output differs (- expected, + actual):\n");
            failures.Append(LineDiff(expected, actual));
            failures.Append('\n');
        }

        if (rewrite)
        {
            string text = script.Render();
            if (text != File.ReadAllText(path).Replace("\r\n", "\n")) File.WriteAllText(path, text);
            return null;
        }
        if (mismatches == 0) return null;
        failures.Append($"{mismatches} command(s) differ. If the new output is right, run with {RewriteVariable}=1 to " +
                        "write it into the file, then read the diff before committing it.");
        return failures.ToString();
    }

    /// <summary>A unified-style diff of two texts, line by line (longest common subsequence), with 2 lines of context.</summary>
    public static string LineDiff(string expected, string actual)
    {
        var a = expected.Split('\n');
        var b = actual.Split('\n');
        var lcs = new int[a.Length + 1, b.Length + 1];
        for (int i = a.Length - 1; i >= 0; i--)
            for (int j = b.Length - 1; j >= 0; j--)
                lcs[i, j] = a[i] == b[j] ? lcs[i + 1, j + 1] + 1 : Math.Max(lcs[i + 1, j], lcs[i, j + 1]);

        var ops = new List<(char Op, string Text)>();
        int x = 0, y = 0;
        while (x < a.Length || y < b.Length)
        {
            if (x < a.Length && y < b.Length && a[x] == b[y]) { ops.Add((' ', a[x])); x++; y++; }
            else if (x < a.Length && (y == b.Length || lcs[x + 1, y] >= lcs[x, y + 1])) ops.Add(('-', a[x++]));
            else ops.Add(('+', b[y++]));
        }

        const int context = 2;
        var sb = new StringBuilder();
        bool skipped = false;
        for (int k = 0; k < ops.Count; k++)
        {
            bool near = false;
            for (int d = -context; d <= context && !near; d++)
                near = k + d >= 0 && k + d < ops.Count && ops[k + d].Op != ' ';
            if (!near) { skipped = true; continue; }
            if (skipped) { sb.Append("  ...\n"); skipped = false; }
            sb.Append(ops[k].Op).Append(' ').Append(ops[k].Text).Append('\n');
        }
        if (skipped) sb.Append("  ...\n");
        return sb.ToString();
    }
}

/// <summary>A command was used wrongly (unknown name, bad argument): fails the test, also when rewriting.</summary>
internal sealed class ScenarioUsageException(string message) : Exception(message);
