using Plover.Fuzz;
using Xunit;

namespace Plover.Tests.Fuzz;

/// <summary>
/// Every file of the fuzz corpus (fuzz/corpus/TARGET/*: seeds, inputs the fuzzer found interesting, and the inputs
/// of bugs it found) run in-process through the same target function the fuzzer runs: each must be accepted or
/// refused with the product's documented error. A FuzzFinding or any other exception fails the test with the file's
/// name. No AFL++ needed.
/// </summary>
public sealed class CorpusReplayTests(FuzzTargetsFixture targets) : IClassFixture<FuzzTargetsFixture>
{
    public static TheoryData<string, string> CorpusFiles()
    {
        var data = new TheoryData<string, string>();
        foreach (string dir in Directory.GetDirectories(FuzzTargetsFixture.CorpusDir).Order(StringComparer.Ordinal))
            foreach (string file in Directory.GetFiles(dir).Order(StringComparer.Ordinal))
                data.Add(Path.GetFileName(dir), Path.GetFileName(file));
        return data;
    }

    [Theory]
    [MemberData(nameof(CorpusFiles))]
    public void CorpusInput_IsAcceptedOrRefusedWithTheDocumentedError(string target, string file)
    {
        var input = File.ReadAllBytes(Path.Combine(FuzzTargetsFixture.CorpusDir, target, file));
        targets[target].Run(input);
        Assert.False(string.IsNullOrEmpty(targets[target].LastOutcome));
    }

    [Fact]
    public void EveryTarget_HasACorpus_AndEveryCorpusFolder_IsATarget()
    {
        var folders = Directory.GetDirectories(FuzzTargetsFixture.CorpusDir).Select(Path.GetFileName).Order().ToArray();
        var names = FuzzTargets.Create().Select(t => t.Name).Order().ToArray();
        Assert.Equal(names, folders);
        foreach (string name in names) Assert.NotEmpty(Directory.GetFiles(Path.Combine(FuzzTargetsFixture.CorpusDir, name), "seed-*"));
    }

    /// <summary>The seed files are what the targets' encoders make today (regenerate them with
    /// <c>dotnet run --project fuzz/Plover.Fuzz -c Release -- seeds fuzz/corpus</c> after a format change).</summary>
    [Fact]
    public void SeedFiles_AreUpToDate()
    {
        foreach (var t in FuzzTargets.Create())
            foreach (var (name, data) in t.Seeds())
                Assert.True(data.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(FuzzTargetsFixture.CorpusDir, t.Name, "seed-" + name))),
                            $"fuzz/corpus/{t.Name}/seed-{name} differs from {t.Name}'s seed");
    }

    /// <summary>The seeds reach the deep paths: each is accepted (a sync completes, a config validates), except
    /// the seeds that are refusals by design.</summary>
    [Fact]
    public void Seeds_AreAccepted_ExceptTheRefusalsByDesign()
    {
        foreach (var t in FuzzTargets.Create())
        {
            if (t.Name == "handshake") continue;   // without a private key every handshake is refused (at the signature)
            foreach (var (name, data) in t.Seeds())
            {
                targets[t.Name].Run(data);
                string outcome = targets[t.Name].LastOutcome;
                if (name == "abort") Assert.StartsWith("refused: the peer aborted the sync", outcome);
                else Assert.True(outcome.StartsWith("accepted", StringComparison.Ordinal), $"{t.Name} seed {name}: {outcome}");
            }
        }
        foreach (var (name, data) in targets["handshake"].Seeds())
        {
            targets["handshake"].Run(data);
            Assert.Contains("signature does not verify", targets["handshake"].LastOutcome);
        }
    }
}
