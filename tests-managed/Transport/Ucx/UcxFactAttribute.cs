using Plover.Transport.Ucx;
using Xunit;

namespace Plover.Tests.Transport.Ucx;

/// <summary>Whether UCX can run here; the reason it cannot, otherwise (the tests that need it skip, saying so).</summary>
public static class UcxAvailability
{
    public static readonly string? Missing = Probe();

    private static string? Probe()
    {
        try
        {
            using var worker = new UcxWorker(UcxSettings.OverTcp, "probe");
            return null;
        }
        catch (Exception e)
        {
            return $"UCX is not usable here ({e.Message}); ./build.sh installs libucx0";
        }
    }
}

/// <summary>A fact that needs UCX: skipped, with the reason, when libucp cannot be loaded or initialised.</summary>
public sealed class UcxFactAttribute : FactAttribute
{
    public UcxFactAttribute()
    {
        if (UcxAvailability.Missing is { } why) Skip = why;
    }
}

/// <summary>A theory over both transports ("tcp", "ucx"): the ucx cases skip, with the reason, when UCX is missing.</summary>
public sealed class TransportTheoryAttribute : TheoryAttribute
{
}

/// <summary>A theory that needs UCX: skipped, with the reason, when libucp cannot be loaded or initialised.</summary>
public sealed class UcxTheoryAttribute : TheoryAttribute
{
    public UcxTheoryAttribute()
    {
        if (UcxAvailability.Missing is { } why) Skip = why;
    }
}
