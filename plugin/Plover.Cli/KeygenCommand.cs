using Plover.Transport;

namespace Plover.Cli;

/// <summary><c>plover keygen FILE</c>: a fresh identity key pair (for a node or an observer). The private key goes
/// to FILE, readable by its owner only; the public key is printed, for the config's publicKey.</summary>
internal static class KeygenCommand
{
    public static int Run(ReadOnlySpan<string> args)
    {
        var cl = CommandLine.Parse("keygen", args, []);
        if (cl.Positionals.Count != 1) throw new UsageException("keygen: expected exactly one argument, the key file to create");
        string path = Path.GetFullPath(cl.Positionals[0]);
        if (OperatingSystem.IsWindows()) throw new IOException("keygen: needs Unix file modes");
        var key = IdentityKey.Generate();
        var options = new FileStreamOptions
        {
            Mode = FileMode.CreateNew,   // never overwrite a key: that would lock the node out of its cluster
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        };
        try
        {
            using var f = new FileStream(path, options);
            f.Write(key.ToFileBytes());
        }
        catch (IOException) when (File.Exists(path))
        {
            throw new IOException($"keygen: {path} already exists (remove it first if you really mean to replace this identity)");
        }
        catch (UnauthorizedAccessException e)
        {
            throw new IOException($"keygen: cannot create {path}: {e.Message}");
        }
        catch (DirectoryNotFoundException)
        {
            throw new IOException($"keygen: directory of {path} does not exist");
        }
        // stdout: the public key alone, so scripts can capture it; the explanation goes to stderr.
        Console.WriteLine(key.PublicKeyText);
        Console.Error.WriteLine($"wrote a P-256 private key to {path} (mode 0600); put the public key above in the config " +
                                "as this node's (or observer's) \"publicKey\"");
        return 0;
    }
}
