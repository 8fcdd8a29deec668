using System.Collections.Concurrent;
using System.Diagnostics;

namespace Plover.Tests.Cli;

/// <summary>
/// Finds or builds the <c>plover</c> command for process tests. PLOVER_CLI may name a published binary (NativeAOT);
/// otherwise the CLI is built framework-dependent into /tmp/plover-test-cli-HASH, one per checkout (own artifacts path, so it never
/// races with builds of the shared tree) and run with <c>dotnet plover.dll</c>, rolled forward to the installed runtime.
/// </summary>
public static class PloverCli
{
    private static readonly Lazy<(string File, string Prefix)> Command = new(Locate);

    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Plover.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root (Plover.sln) not found");
    }

    private static (string, string) Locate()
    {
        var env = Environment.GetEnvironmentVariable("PLOVER_CLI");
        if (!string.IsNullOrEmpty(env))
        {
            if (!File.Exists(env)) throw new InvalidOperationException($"PLOVER_CLI={env} does not exist");
            return (env, "");
        }
        // One folder per checkout: worktrees of different branches must not share build outputs (a stale generated
        // protobuf file from another branch's build was taken as up to date).
        string root = RepoRoot();
        string work = $"/tmp/plover-test-cli-{Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(root)))[..12].ToLowerInvariant()}";
        var psi = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { "build", Path.Combine(root, "plugin/Plover.Cli"), "-c", "Release", "-nologo", "-v:q",
                             "-p:PublishAot=false", "--artifacts-path", $"{work}/artifacts", "-o", $"{work}/bin" },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(300_000)) { p.Kill(true); throw new InvalidOperationException("building the CLI took over 5 minutes"); }
        if (p.ExitCode != 0) throw new InvalidOperationException($"building the CLI failed:\n{output.Result}\n{error.Result}");
        return ("dotnet", $"{work}/bin/plover.dll");
    }

    public static ProcessStartInfo StartInfo(params string[] args)
    {
        var (file, prefix) = Command.Value;
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (prefix.Length > 0) psi.ArgumentList.Add(prefix);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_ROLL_FORWARD"] = "Major";
        return psi;
    }

    /// <summary>Runs to completion; returns exit code, stdout, stderr.</summary>
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        using var p = Process.Start(StartInfo(args))!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000)) { p.Kill(true); throw new TimeoutException($"plover {string.Join(' ', args)} did not exit"); }
        return (p.ExitCode, output.Result, error.Result);
    }
}

/// <summary>A running plover process whose stdout and stderr lines are collected as they come.</summary>
public sealed class PloverProcess : IDisposable
{
    public readonly Process Process;
    public readonly ConcurrentQueue<string> Out = new();
    public readonly ConcurrentQueue<string> Err = new();
    public readonly string Name;

    public PloverProcess(string name, params string[] args)
    {
        Name = name;
        Process = new Process { StartInfo = PloverCli.StartInfo(args) };
        Process.OutputDataReceived += (_, e) => { if (e.Data is not null) Out.Enqueue(e.Data); };
        Process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Err.Enqueue(e.Data); };
        Process.Start();
        Process.BeginOutputReadLine();
        Process.BeginErrorReadLine();
    }

    /// <summary>The last stdout line starting with prefix and satisfying the condition, waiting for it.</summary>
    public string? WaitLine(string prefix, Func<string, bool>? condition = null, int timeoutMs = 30_000)
    {
        var sw = Stopwatch.StartNew();
        while (sw.ElapsedMilliseconds < timeoutMs)
        {
            var line = Out.LastOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal) && (condition?.Invoke(l) ?? true));
            if (line is not null) return line;
            if (Process.HasExited) break;
            Thread.Sleep(10);
        }
        return Out.LastOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal) && (condition?.Invoke(l) ?? true));
    }

    public void Signal(string signal)
    {
        using var k = Process.Start("kill", $"-{signal} {Process.Id}");
        k.WaitForExit();
    }

    public string Transcript() => $"--- {Name} stdout (last 20)\n{string.Join("\n", Out.TakeLast(20))}\n--- {Name} stderr (last 40)\n{string.Join("\n", Err.TakeLast(40))}";

    public void Dispose()
    {
        try { if (!Process.HasExited) Process.Kill(true); } catch (InvalidOperationException) { }
        Process.Dispose();
    }

    /// <summary>Value of key=value in a line (null if absent).</summary>
    public static string? Field(string? line, string key)
    {
        if (line is null) return null;
        foreach (var part in line.Split(' '))
            if (part.StartsWith(key + "=", StringComparison.Ordinal)) return part[(key.Length + 1)..];
        return null;
    }
}
