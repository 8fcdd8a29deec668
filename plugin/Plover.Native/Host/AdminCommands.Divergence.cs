using System.Text.Json;
using Plover.Sync;

namespace Plover.Native.Host;

/// <summary>
/// Divergence explained (issue 12 item 1): what the backup saw when it applied the primary's divergent pages over
/// its own copies. Recorded on the backup only (a primary answers with empty figures and says so).
/// <code>
/// divergence [reset]        {role,recordedOn:"backup",window,syncs,fullSyncsSkipped,pages,bytes,blocks64,
///                            meanBlocks64,meanBytes,unchanged,histogram:{"1-8":n,"9-64":n,"65-512":n,"513-4095":n,
///                            "4096":n},regionBytes,regionsWithDivergence,topRegions:[{block,offsetMiB,pages}],
///                            recurring:{threshold,pages,top:[{block,offset,syncs}]},
///                            last:{epoch,pages,bytes,blocks64,recurring,histogram}}
///                           every ordinary sync since the start or the last reset (full syncs are left out);
///                           pages = divergent pages compared, bytes and blocks64 = bytes and 64-byte blocks that
///                           differed in them; topRegions = the 20 1 MiB regions of guest RAM (RAM block and offset
///                           in it) with the most divergent pages; recurring = pages that diverged in at least
///                           threshold of the last window syncs (half of them), the 20 most frequent listed;
///                           "reset" clears everything first
/// </code>
/// The syncs command's records carry each sync's own figures (see <see cref="WriteSyncDivergence"/>).
/// </summary>
internal sealed unsafe partial class AdminCommands
{
    private const int TopDivergence = 20;

    private void AddDivergenceCommands() => _commands["divergence"] = ("divergence [reset]", Divergence);

    private string Divergence(string[] args)
    {
        bool reset = args switch
        {
            [] => false,
            ["reset"] => true,
            _ => throw new AdminError("usage: divergence [reset]"),
        };
        var replica = Node.Replica ?? throw new AdminError("the replica is starting: the start-up probe waits for its peers");
        var stats = replica.Engine.Divergence;
        if (reset) stats.Reset();
        var s = stats.Read(TopDivergence);

        using var reply = new AdminReply();
        Utf8JsonWriter j = reply.Json;
        j.WriteString("role", replica.Engine.Role == SyncRole.Primary ? "primary" : "backup");
        j.WriteString("recordedOn", "backup");
        j.WriteNumber("window", DivergenceStats.Window);
        j.WriteNumber("syncs", s.Syncs);
        j.WriteNumber("fullSyncsSkipped", s.FullSyncsSkipped);
        WriteSample(j, s.Total);
        j.WriteNumber("meanBlocks64", Math.Round(s.Total.MeanBlocks64, 3));
        j.WriteNumber("meanBytes", s.Total.Pages == 0 ? 0 : Math.Round((double)s.Total.Bytes / s.Total.Pages, 1));
        j.WriteNumber("unchanged", s.Total.Unchanged);
        j.WriteNumber("regionBytes", DivergenceStats.RegionBytes);
        j.WriteNumber("regionsWithDivergence", s.RegionsWithDivergence);
        j.WriteStartArray("topRegions");
        foreach (var r in s.TopRegions)
        {
            j.WriteStartObject();
            j.WriteString("block", r.Block);
            j.WriteNumber("offsetMiB", r.OffsetMiB);
            j.WriteNumber("pages", r.Pages);
            j.WriteEndObject();
        }
        j.WriteEndArray();
        j.WriteStartObject("recurring");
        j.WriteNumber("threshold", s.RecurringThreshold);
        j.WriteNumber("pages", s.RecurringPages);
        j.WriteStartArray("top");
        foreach (var p in s.TopRecurring)
        {
            j.WriteStartObject();
            j.WriteString("block", p.Block);
            j.WriteNumber("offset", p.Offset);
            j.WriteNumber("syncs", p.Syncs);
            j.WriteEndObject();
        }
        j.WriteEndArray();
        j.WriteEndObject();
        j.WriteStartObject("last");
        j.WriteNumber("epoch", s.LastEpoch);
        WriteSample(j, s.Last);
        j.WriteNumber("recurring", s.Last.Recurring);
        j.WriteEndObject();
        return reply.Finish();
    }

    /// <summary>pages, bytes, blocks64 and the histogram of a sample.</summary>
    private static void WriteSample(Utf8JsonWriter j, in DivergenceSample d)
    {
        j.WriteNumber("pages", d.Pages);
        j.WriteNumber("bytes", d.Bytes);
        j.WriteNumber("blocks64", d.Blocks64);
        j.WriteStartObject("histogram");
        for (int i = 0; i < DivergenceHistogram.Buckets; i++) j.WriteNumber(DivergenceHistogram.Labels[i], d.Histogram[i]);
        j.WriteEndObject();
    }

    /// <summary>The per-sync figures of sub-blocks and divergence in a syncs record: subBlockBytes (0: whole pages),
    /// subBlockHashBytes, repairedPages (sent again whole after a sub-block hash collision), subBlocks and
    /// pageDataBytes sent or received, puts and putBytes (UCX page puts: the primary's ucp_put calls,
    /// and the bytes put or, on the backup, checked), subBlocksUs (the pause's sub-block round), and divergence
    /// {pages,bytes,blocks64,recurring,unchanged,histogram} (the backup's comparison; zero on the primary).</summary>
    private static void WriteSyncDivergence(Utf8JsonWriter j, SyncStats s)
    {
        j.WriteNumber("subBlockBytes", s.SubBlockBytes);
        j.WriteNumber("subBlockHashBytes", s.SubBlockHashBytes);
        j.WriteNumber("repairedPages", s.RepairedPages);
        j.WriteNumber("subBlocks", s.SubBlocks);
        j.WriteNumber("pageDataBytes", s.PageDataBytes);
        j.WriteNumber("puts", s.Puts);
        j.WriteNumber("putBytes", s.PutBytes);
        j.WriteNumber("subBlocksUs", Math.Round(s.Pause.SubBlocks, 1));
        j.WriteStartObject("divergence");
        WriteSample(j, s.Divergence);
        j.WriteNumber("recurring", s.Divergence.Recurring);
        j.WriteNumber("unchanged", s.Divergence.Unchanged);
        j.WriteEndObject();
    }
}
