using Plover.Platform;
using Xunit;

namespace Plover.Tests.Platform;

/// <summary>The folder fsync behind the disk generation records (<see cref="DirectoryFlush"/>). Whether it reaches
/// the disk cannot be seen without cutting the power; these check that it runs on a folder and refuses anything else
/// by name instead of passing silently.</summary>
public sealed class DirectoryFlushTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("plover-flush-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_folder_is_flushed() => DirectoryFlush.Flush(_dir);

    [Fact]
    public void A_missing_folder_is_an_error_naming_it()
    {
        string missing = Path.Combine(_dir, "gone");
        var e = Assert.Throws<IOException>(() => DirectoryFlush.Flush(missing));
        Assert.Contains(missing, e.Message);
        Assert.Contains("errno 2", e.Message);
    }

    [Fact]
    public void A_file_is_not_a_folder()
    {
        string file = Path.Combine(_dir, "a.img");
        File.WriteAllText(file, "x");
        var e = Assert.Throws<IOException>(() => DirectoryFlush.Flush(file));
        Assert.Contains("errno 20", e.Message);   // ENOTDIR
    }
}
