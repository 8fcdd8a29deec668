using Xunit;

namespace Plover.Tests.Cli;

/// <summary>Bad command lines and configs name the problem and exit non-zero; keygen writes a private key.</summary>
public sealed class CommandLineTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("plover-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Theory]
    [InlineData(new[] { "frob" }, "unknown command 'frob'")]
    [InlineData(new[] { "witness", "--node", "3" }, "witness: missing --config")]
    [InlineData(new[] { "witness", "--config", "/nonexistent/c.json", "--node", "3" }, "config file '/nonexistent/c.json' does not exist")]
    [InlineData(new[] { "bench-node", "--bogus" }, "unknown option --bogus")]
    [InlineData(new[] { "bench-node", "--workload", "x:consensus:8:1:1:1" }, "SIZE must be an integer >= 24")]
    [InlineData(new[] { "keygen" }, "keygen: expected exactly one argument")]
    public void BadCommandLinesExitWithTwo(string[] args, string message)
    {
        var (code, _, err) = PloverCli.Run(args);
        Assert.Equal(2, code);
        Assert.Contains(message, err);
    }

    [Fact]
    public void BadConfigIsNamed()
    {
        var path = Path.Combine(_dir, "c.json");
        File.WriteAllText(path, """{"cluster": "x", "keyFile": "k", "nodes": []}""");
        var (code, _, err) = PloverCli.Run("witness", "--config", path, "--node", "3");
        Assert.Equal(2, code);
        Assert.Contains("plover: config:", err);
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void KeygenWritesAPrivateKeyAndNeverOverwrites()
    {
        var key = Path.Combine(_dir, "cluster.key");
        var (code, stdout, err) = PloverCli.Run("keygen", key);
        Assert.True(code == 0, err);
        Assert.Equal(Plover.Transport.IdentityKey.FileSize, new FileInfo(key).Length);
        // stdout is the public key alone, and it is the key file's
        Assert.Equal(Plover.Transport.IdentityKey.Load(key).PublicKeyText, stdout.Trim());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        var first = File.ReadAllBytes(key);
        (code, _, err) = PloverCli.Run("keygen", key);
        Assert.Equal(1, code);
        Assert.Contains("already exists", err);
        Assert.Equal(first, File.ReadAllBytes(key));
    }
}
