using Xunit;
using Xunit.Abstractions;

namespace Plover.Tests.Consensus;

/// <summary>Re-runs one seed of the randomized simulation: set PLOVER_SIM_SEED to reproduce a failure.</summary>
public sealed class SeedDebugTests(ITestOutputHelper output)
{
    [Fact]
    public void SingleSeed()
    {
        int seed = int.TryParse(Environment.GetEnvironmentVariable("PLOVER_SIM_SEED"), out int s) ? s : 1;
        var stats = new SimStats();
        RandomizedSimulationTests.RunSeed(seed, stats);
        output.WriteLine($"seed {seed}: {stats}");
    }
}
