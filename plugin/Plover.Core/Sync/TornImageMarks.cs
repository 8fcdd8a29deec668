using System.Runtime.InteropServices;
using System.Text;

namespace Plover.Sync;

/// <summary>
/// The mark a backup keeps beside each replicated drive's image file while a sync writes blocks to it (issue 15
/// item 3): from the first block written until the sync completes the image is neither the previous sync point nor
/// the new one, and a crash in between must not leave it looking usable. The mark is a file IMAGE.plover-torn that
/// says so; it outlives the process (it is not fsynced: a host's power loss is not covered, see the README). A node
/// that finds it at start may join as a backup, whose full sync repairs the image and removes it, but may not found
/// a cluster as its primary. Marking and clearing allocate nothing (precomputed paths, libc calls): they run once
/// per sync that writes blocks.
/// </summary>
public sealed unsafe partial class TornImageMarks
{
    public const string Suffix = ".plover-torn";

    private readonly byte[][] _paths;   // NUL-terminated UTF-8 mark paths
    private readonly byte[][] _texts;   // what each mark says
    private bool _marked;

    /// <summary>images: each drive's image file ("" when it is not a local file: it cannot be marked). Reads the
    /// marks left by an earlier process, and checks every mark can be written (else throws, naming the folder).</summary>
    public TornImageMarks(IReadOnlyList<(string Drive, string Image)> images, int node)
    {
        Unmarkable = images.Where(i => i.Image.Length == 0).Select(i => i.Drive).ToArray();
        var marked = images.Where(i => i.Image.Length > 0).ToArray();
        MarkFiles = marked.Select(i => i.Image + Suffix).ToArray();
        _paths = MarkFiles.Select(p => Encoding.UTF8.GetBytes(p + "\0")).ToArray();
        _texts = marked.Select(i => Encoding.UTF8.GetBytes(
            $"Plover node {node}: a sync was writing this image (drive '{i.Drive}') when the node stopped; it is neither " +
            "sync point and must not be booted. Plover repairs it and removes this file when the node joins its cluster " +
            "as a backup (the join's full sync); a node whose image is marked cannot start a new cluster as its primary.\n")).ToArray();
        Found = MarkFiles.Where(File.Exists).ToArray();
        _marked = Found.Count > 0;
        foreach (var (drive, image) in marked)
        {
            string probe = image + Suffix + ".probe";
            try
            {
                File.WriteAllText(probe, "");
                File.Delete(probe);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new InvalidOperationException(
                    $"drive '{drive}': cannot write the torn-image mark beside its image '{image}' ({e.Message}); " +
                    $"the image's folder must be writable by QEMU");
            }
        }
    }

    /// <summary>The mark files, one per drive with a local image.</summary>
    public IReadOnlyList<string> MarkFiles { get; }
    /// <summary>Drives whose image is not a local file (a network block device): nothing marks them.</summary>
    public IReadOnlyList<string> Unmarkable { get; }
    /// <summary>The marks found at start (left by a process that stopped while a sync wrote the images).</summary>
    public IReadOnlyList<string> Found { get; }
    public bool Marked => _marked;

    /// <summary>Before a sync's first write: every image marked torn. No-op when marked; throws if a mark cannot be
    /// written (the sync then fails before it writes).</summary>
    public void Mark()
    {
        if (_marked) return;
        for (int i = 0; i < _paths.Length; i++)
            fixed (byte* p = _paths[i], text = _texts[i])
            {
                int fd = Open(p, OWronly | OCreat | OTrunc | OCloexec, 420);   // 0644
                if (fd < 0) throw new IOException($"cannot create {MarkFiles[i]}: errno {Marshal.GetLastPInvokeError()}");
                nint written = Write(fd, text, _texts[i].Length);
                Close(fd);
                if (written != _texts[i].Length) throw new IOException($"cannot write {MarkFiles[i]}: errno {Marshal.GetLastPInvokeError()}");
            }
        _marked = true;
    }

    /// <summary>A sync completed: the images hold the primary's blocks at its cut; the marks go. No-op when none.</summary>
    public void Clear()
    {
        if (!_marked) return;
        for (int i = 0; i < _paths.Length; i++)
            fixed (byte* p = _paths[i])
                if (Unlink(p) < 0 && Marshal.GetLastPInvokeError() != 2)   // ENOENT: gone already
                    throw new IOException($"cannot remove {MarkFiles[i]}: errno {Marshal.GetLastPInvokeError()}");
        _marked = false;
    }

    private const int OWronly = 1, OCreat = 0x40, OTrunc = 0x200, OCloexec = 0x80000;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true)]
    private static partial int Open(byte* path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint Write(int fd, byte* buf, nint count);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "unlink", SetLastError = true)]
    private static partial int Unlink(byte* path);
}
