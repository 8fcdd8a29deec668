using Plover.Sync;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>Which replica's drive images are newest (<see cref="DiskGeneration"/>) and its record beside the images
/// (<see cref="DiskGenerationFiles"/>): it outlives the process, the oldest drive's record counts, and a damaged
/// record is refused by name.</summary>
public sealed class DiskGenerationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("plover-gen-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string[] Images() => [Path.Combine(_dir, "a.img"), Path.Combine(_dir, "b.img")];

    [Fact]
    public void The_higher_number_is_newer_and_at_the_same_number_the_primarys()
    {
        Assert.True(new DiskGeneration(3, false).IsNewerThan(new DiskGeneration(2, true)));
        Assert.True(new DiskGeneration(2, true).IsNewerThan(new DiskGeneration(2, false)));
        Assert.False(new DiskGeneration(2, false).IsNewerThan(new DiskGeneration(2, true)));
        Assert.False(new DiskGeneration(2, true).IsNewerThan(new DiskGeneration(2, true)));
        Assert.True(new DiskGeneration(1, false).IsNewerThan(default));
    }

    [Fact]
    public void A_record_outlives_its_writer_and_images_without_one_are_the_oldest()
    {
        var files = new DiskGenerationFiles(Images());
        Assert.Equal(default, files.Current);
        files.Record(new DiskGeneration(5, Primary: true));
        Assert.Equal("generation 5 primary\n", File.ReadAllText(Images()[0] + DiskGenerationFiles.Suffix));
        Assert.Equal(new DiskGeneration(5, true), new DiskGenerationFiles(Images()).Current);

        // a crash between the two drives' records: the older one counts
        File.WriteAllText(Images()[1] + DiskGenerationFiles.Suffix, "generation 4 backup\n");
        Assert.Equal(new DiskGeneration(4, false), new DiskGenerationFiles(Images()).Current);
        File.Delete(Images()[1] + DiskGenerationFiles.Suffix);
        Assert.Equal(default, new DiskGenerationFiles(Images()).Current);
        Assert.Empty(Directory.GetFiles(_dir, "*.new"));
    }

    [Fact]
    public void A_damaged_record_is_refused_naming_the_file()
    {
        File.WriteAllText(Images()[0] + DiskGenerationFiles.Suffix, "generation x\n");
        var e = Assert.Throws<InvalidOperationException>(() => new DiskGenerationFiles(Images()));
        Assert.Contains("a.img" + DiskGenerationFiles.Suffix, e.Message);
        Assert.Contains("not a Plover generation record", e.Message);
    }
}
