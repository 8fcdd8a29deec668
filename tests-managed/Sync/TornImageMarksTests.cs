using Plover.Sync;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>The marks beside replicated drive images that a sync is writing (issue 15 item 3): they outlive the
/// object that wrote them (a later process finds them), say which drive, go when cleared, cost no allocation, and a
/// folder where they cannot be written is refused at start.</summary>
public sealed class TornImageMarksTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("plover-torn-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (string, string)[] Images() => [("data0", Path.Combine(_dir, "data0.img")), ("logs", Path.Combine(_dir, "logs.qcow2"))];

    [Fact]
    public void A_mark_outlives_its_writer_names_the_drive_and_goes_when_cleared()
    {
        var marks = new TornImageMarks(Images(), node: 2);
        Assert.False(marks.Marked);
        Assert.Empty(marks.Found);
        Assert.Empty(Directory.GetFiles(_dir));   // the start-up check left nothing behind

        marks.Mark();
        marks.Mark();   // marked already: nothing to do
        Assert.True(marks.Marked);
        string mark = Path.Combine(_dir, "data0.img" + TornImageMarks.Suffix);
        Assert.Equal([mark, Path.Combine(_dir, "logs.qcow2" + TornImageMarks.Suffix)], marks.MarkFiles);
        string text = File.ReadAllText(mark);
        Assert.Contains("Plover node 2", text);
        Assert.Contains("drive 'data0'", text);
        Assert.Contains("must not be booted", text);

        // the process dies here; the next one finds the marks
        var restarted = new TornImageMarks(Images(), node: 2);
        Assert.True(restarted.Marked);
        Assert.Equal(marks.MarkFiles, restarted.Found);

        restarted.Clear();
        Assert.False(restarted.Marked);
        Assert.Empty(Directory.GetFiles(_dir));
        Assert.False(new TornImageMarks(Images(), node: 2).Marked);
    }

    [Fact]
    public void A_drive_without_a_local_image_is_listed_as_unmarkable()
    {
        var marks = new TornImageMarks([("data0", Path.Combine(_dir, "a.img")), ("remote", "")], node: 1);
        Assert.Equal(["remote"], marks.Unmarkable);
        Assert.Single(marks.MarkFiles);
    }

    [Fact]
    public void An_image_folder_where_no_mark_can_be_written_is_refused_at_start_naming_the_drive()
    {
        var e = Assert.Throws<InvalidOperationException>(() =>
            new TornImageMarks([("data0", Path.Combine(_dir, "no-such-folder", "d.img"))], node: 1));
        Assert.Contains("drive 'data0'", e.Message);
        Assert.Contains("cannot write the torn-image mark", e.Message);
    }

    [Fact]
    public void Marking_and_clearing_allocate_nothing()
    {
        var marks = new TornImageMarks(Images(), node: 1);
        // warmed past tiered compilation's call counts, and the least of three rounds: once in a full-suite run the
        // single measured round saw 8,008 bytes on this thread (the runtime's, not the marks': garbage per call
        // shows in every round)
        var rounds = new long[3];
        for (int round = -1; round < rounds.Length; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 200; i++)
            {
                marks.Mark();
                marks.Clear();
            }
            if (round >= 0) rounds[round] = GC.GetAllocatedBytesForCurrentThread() - before;
        }
        Assert.True(rounds.Min() == 0, $"bytes per round of 200: {string.Join(", ", rounds)}");
    }
}
