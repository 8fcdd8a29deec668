using System.Security.Cryptography;

namespace Plover.Cli;

/// <summary><c>plover keygen FILE</c>: a fresh cluster key, readable by its owner only.</summary>
internal static class KeygenCommand
{
    public static int Run(ReadOnlySpan<string> args)
    {
        var cl = CommandLine.Parse("keygen", args, []);
        if (cl.Positionals.Count != 1) throw new UsageException("keygen: expected exactly one argument, the key file to create");
        string path = Path.GetFullPath(cl.Positionals[0]);
        if (OperatingSystem.IsWindows()) throw new IOException("keygen: needs Unix file modes");
        var key = RandomNumberGenerator.GetBytes(32);
        var options = new FileStreamOptions
        {
            Mode = FileMode.CreateNew,   // never overwrite a key: that would split the cluster
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        };
        try
        {
            using var f = new FileStream(path, options);
            f.Write(key);
        }
        catch (IOException) when (File.Exists(path))
        {
            throw new IOException($"keygen: {path} already exists (remove it first if you really mean to replace the cluster key)");
        }
        catch (UnauthorizedAccessException e)
        {
            throw new IOException($"keygen: cannot create {path}: {e.Message}");
        }
        catch (DirectoryNotFoundException)
        {
            throw new IOException($"keygen: directory of {path} does not exist");
        }
        Console.WriteLine($"wrote a 32-byte cluster key to {path} (mode 0600)");
        return 0;
    }
}
