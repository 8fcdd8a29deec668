using System.Runtime;

namespace Plover.Platform;

/// <summary>
/// The garbage collector this process runs with, for the start-up log line: the settings are compiled into the
/// NativeAOT binaries (Plover.Native.csproj, Plover.Cli.csproj) and DOTNET_ variables can override them, so the log
/// says which ones took effect.
/// </summary>
public static class GcReport
{
    public static string Describe()
    {
        var config = GC.GetConfigurationVariables();
        string Flag(string key) => config.TryGetValue(key, out var v) && v is true ? "on" : "off";
        return $"{(GCSettings.IsServerGC ? "server" : "workstation")} GC, concurrent {Flag("ConcurrentGC")}, retain VM {Flag("RetainVM")}";
    }
}
