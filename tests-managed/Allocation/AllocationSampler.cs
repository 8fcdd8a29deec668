using System.Collections.Concurrent;
using System.Diagnostics.Tracing;

namespace Plover.Tests.Allocation;

/// <summary>
/// Which types the process allocates, sampled: the runtime reports the type of the object that crosses every
/// 100 KB allocated (GCAllocationTick). Named in a failing test's message, so it says what to look for.
/// </summary>
internal sealed class AllocationSampler : EventListener
{
    private const EventKeywords GcKeyword = (EventKeywords)0x1;
    private readonly ConcurrentDictionary<string, int> _types = new();

    protected override void OnEventSourceCreated(EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime") EnableEvents(source, EventLevel.Verbose, GcKeyword);
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (e.EventName is null || !e.EventName.StartsWith("GCAllocationTick", StringComparison.Ordinal) || e.PayloadNames is null) return;
        int i = e.PayloadNames.IndexOf("TypeName");
        if (i >= 0 && e.Payload?[i] is string type) _types.AddOrUpdate(type, 1, (_, n) => n + 1);
    }

    /// <summary>The most sampled types, as "type x samples" (each sample stands for about 100 KB).</summary>
    public string Top(int count = 8)
    {
        var top = _types.OrderByDescending(kv => kv.Value).Take(count).Select(kv => $"{kv.Key} x{kv.Value}").ToList();
        return top.Count == 0 ? "no 100 KB sample" : string.Join(", ", top);
    }
}
