using Xunit;

namespace Plover.Tests.Allocation;

/// <summary>
/// The allocation tests count bytes allocated by the whole process (GC.GetTotalAllocatedBytes), and the denial of
/// service tests read every thread's scheduling policy, so they must not run beside other tests: xunit runs a
/// collection with DisableParallelization alone, after the parallel ones.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCollection
{
    public const string Name = "allocation";
}
