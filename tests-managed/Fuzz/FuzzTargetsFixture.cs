using Plover.Fuzz;

namespace Plover.Tests.Fuzz;

/// <summary>One instance of every fuzz target for a test class (the sync target owns engines and threads), and
/// the corpus folder copied beside the tests (fuzz/corpus, see Plover.Tests.csproj).</summary>
public sealed class FuzzTargetsFixture : IDisposable
{
    public static readonly string CorpusDir = Path.Combine(AppContext.BaseDirectory, "FuzzCorpus");
    private readonly Dictionary<string, IFuzzTarget> _targets = FuzzTargets.Create().ToDictionary(t => t.Name);

    public IFuzzTarget this[string name] => _targets[name];

    public void Dispose()
    {
        foreach (var t in _targets.Values) (t as IDisposable)?.Dispose();
    }
}
