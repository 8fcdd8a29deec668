using System.Runtime.CompilerServices;
using Plover.Transport.Ucx;
using Xunit;

namespace Plover.Tests.Transport.Ucx;

/// <summary>With UCX loaded, the runtime still turns a null dereference (a SIGSEGV) into an exception: UCX's own
/// error signal handlers would end the process instead (see <see cref="UcxSignals"/>).</summary>
public class UcxSignalTests
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int Length(string? s) => s!.Length;   // a load through null: the runtime's SIGSEGV handler

    [UcxFact]
    public void A_null_dereference_after_UCX_loaded_is_an_exception_not_the_end_of_the_process()
    {
        using var worker = new UcxWorker(UcxSettings.OverTcp, "signals");
        Assert.Throws<NullReferenceException>(() => Length(null));
    }
}
