using System.Globalization;

namespace Plover.Sync;

/// <summary>
/// The <see cref="DiskGeneration"/> of a replica's drive images, in a file beside each image (IMAGE.plover-generation:
/// "generation N primary|backup"), written by rename so a crash leaves the old record or the new one, and fsynced with its folder
/// (it changes once per promotion, fresh start or first sync after one, never per sync). The images' generation is
/// the oldest of their files (an image without one: none), so a crash between two drives' files errs on the old side.
/// </summary>
public sealed class DiskGenerationFiles
{
    public const string Suffix = ".plover-generation";

    private readonly string[] _files;

    /// <summary>images: each drive's image file ("" when it is not a local file: nothing recorded for it).</summary>
    public DiskGenerationFiles(IEnumerable<string> images)
    {
        _files = images.Where(i => i.Length > 0).Select(i => i + Suffix).ToArray();
        Current = _files.Length == 0 ? default : _files.Select(Read).MinBy(g => (g.Number, g.Primary));
    }

    public DiskGeneration Current { get; private set; }

    public void Record(DiskGeneration generation)
    {
        lock (_files)
        {
            if (generation == Current) return;
            string text = $"generation {generation.Number} {(generation.Primary ? "primary" : "backup")}\n";
            foreach (string file in _files)
            {
                string temp = file + ".new";
                using (var f = new FileStream(temp, FileMode.Create, FileAccess.Write))
                {
                    f.Write(System.Text.Encoding.UTF8.GetBytes(text));
                    f.Flush(flushToDisk: true);
                }
                File.Move(temp, file, overwrite: true);
                Platform.DirectoryFlush.Flush(Path.GetDirectoryName(Path.GetFullPath(file))!);
            }
            Current = generation;
        }
    }

    private static DiskGeneration Read(string file)
    {
        if (!File.Exists(file)) return default;
        string[] words = File.ReadAllText(file).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (words.Length != 3 || words[0] != "generation" || !ulong.TryParse(words[1], NumberStyles.None, CultureInfo.InvariantCulture, out ulong n) ||
            words[2] is not ("primary" or "backup"))
            throw new InvalidOperationException($"{file} is not a Plover generation record (\"generation N primary|backup\"): " +
                                                "restore it or delete it (the image then counts as the oldest)");
        return new DiskGeneration(n, words[2] == "primary");
    }
}
