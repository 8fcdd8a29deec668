// Data-driven scenario tests of the consensus core (issue 13, item 2), after etcd's raft testdata/*.txt.
//
// Each file in testdata/ is a story: commands, each followed by "----" and the output it must produce (see
// README.md next to this file for the format and the commands). This test runs every file and fails with a line
// diff for each command whose output changed.
//
// To accept new output (after a deliberate change of the core or of a scenario), rewrite the files and read the diff:
//
//     PLOVER_REWRITE_SCENARIOS=1 dotnet test tests-managed/Plover.Tests.csproj --filter "FullyQualifiedName~ConsensusScenario"
//     git diff tests-managed/Consensus/Scenarios/testdata
//
// The files are read from the source tree when it is present (a rewrite must land there), else from the copy the
// build puts next to the test binary (Plover.Tests.csproj copies them).
using Xunit;
using Plover.Tests.Scenarios;

namespace Plover.Tests.Consensus.Scenarios;

public sealed class ConsensusScenarioTests
{
    private const string OutputFolder = "Consensus/Scenarios/testdata";

    public static TheoryData<string> Files() => ScenarioRunner.Files(OutputFolder);

    [Theory]
    [MemberData(nameof(Files))]
    public void Scenario(string file)
    {
        string path = Path.Combine(ScenarioRunner.TestDataDirectory(OutputFolder), file);
        var env = new ConsensusScenarioEnv();
        string? failure = ScenarioRunner.Run(path, env.Handle, ScenarioRunner.Rewriting);
        Assert.True(failure is null, failure);
    }

    [Fact]
    public void ThereAreScenarios() => Assert.True(Files().Count >= 8, "the testdata folder lost its scenarios");

    [Fact]
    public void TheFormatRoundTrips()
    {
        const string text = "# comment\n\ncmd 1 k=v l=(a, b) \"x y\"\ninput\n----\nout\n\n# between\nnext\n----\n----\na\n\nb\n----\n----\n\n# trailer\n";
        var script = ScenarioScript.Parse(text, "t.txt");
        Assert.Equal(2, script.Cases.Count);
        var first = script.Cases[0];
        Assert.Equal(("cmd", 3), (first.Command, first.Line));
        Assert.Equal(["1", "k=v", "l=(a,b)", "x y"], first.Args.Select(a => a.ToString()));
        Assert.Equal(["input"], first.Input);
        Assert.Equal("out", first.Expected);
        Assert.Equal("a\n\nb", script.Cases[1].Expected);
        Assert.Equal(text, script.Render());
    }

    [Fact]
    public void AMismatchIsReportedWithADiff()
    {
        string path = Path.Combine(Path.GetTempPath(), $"plover-scenario-{Guid.NewGuid():N}.txt");
        File.WriteAllText(path, "add-nodes\n----\nnot what it prints\n");
        try
        {
            string? failure = ScenarioRunner.Run(path, new ConsensusScenarioEnv().Handle, rewrite: false);
            Assert.NotNull(failure);
            Assert.Contains(":1: add-nodes", failure);
            Assert.Contains("- not what it prints", failure);
            Assert.Contains("+ 1: Leader ballot=1.1", failure);
            Assert.Contains(ScenarioRunner.RewriteVariable, failure);
        }
        finally { File.Delete(path); }
    }
}
