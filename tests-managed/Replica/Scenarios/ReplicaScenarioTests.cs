// Data-driven scenario tests of the replica core (issue 13, item 2), in the consensus scenarios' format.
//
// Each file in testdata/ is a story: commands, each followed by "----" and the output it must produce (see
// README.md next to this file). To accept new output after a deliberate change, rewrite the files and read the diff:
//
//     PLOVER_REWRITE_SCENARIOS=1 dotnet test tests-managed/Plover.Tests.csproj --filter "FullyQualifiedName~ReplicaScenario"
//     git diff tests-managed/Replica/Scenarios/testdata
using Plover.Tests.Scenarios;
using Xunit;

namespace Plover.Tests.Replica.Scenarios;

public sealed class ReplicaScenarioTests
{
    private const string OutputFolder = "Replica/Scenarios/testdata";

    public static TheoryData<string> Files() => ScenarioRunner.Files(OutputFolder);

    [Theory]
    [MemberData(nameof(Files))]
    public void Scenario(string file)
    {
        string path = Path.Combine(ScenarioRunner.TestDataDirectory(OutputFolder), file);
        string? failure = ScenarioRunner.Run(path, new ReplicaScenarioEnv().Handle, ScenarioRunner.Rewriting);
        Assert.True(failure is null, failure);
    }

    [Fact]
    public void ThereAreScenarios() => Assert.True(Files().Count >= 6, "the testdata folder lost its scenarios");

    [Fact]
    public void NoScenarioShowsASafetyViolation()
    {
        foreach (var f in Directory.GetFiles(ScenarioRunner.TestDataDirectory(OutputFolder), "*.txt"))
            Assert.DoesNotContain("SAFETY VIOLATION", File.ReadAllText(f));
    }
}
