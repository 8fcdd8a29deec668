using System.Text.Json;

namespace Plover.Cli;

/// <summary>The collections and GC pause between Start and Write: what a measured workload itself cost, apart from
/// start-up and the workloads before it (bench-node's result JSON, "gc").</summary>
internal readonly record struct GcWindow(int Gen0, int Gen1, int Gen2, TimeSpan Pause, long Allocated)
{
    public static GcWindow Start() =>
        new(GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2), GC.GetTotalPauseDuration(), GC.GetTotalAllocatedBytes());

    public void Write(Utf8JsonWriter j)
    {
        var now = Start();
        j.WriteStartObject("gc");
        j.WriteNumber("gen0", now.Gen0 - Gen0);
        j.WriteNumber("gen1", now.Gen1 - Gen1);
        j.WriteNumber("gen2", now.Gen2 - Gen2);
        j.WriteNumber("pause_ms", Math.Round((now.Pause - Pause).TotalMilliseconds, 2));
        j.WriteNumber("allocated_bytes", now.Allocated - Allocated);
        j.WriteEndObject();
    }
}
