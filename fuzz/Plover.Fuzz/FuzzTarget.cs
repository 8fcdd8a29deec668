namespace Plover.Fuzz;

/// <summary>
/// One fuzz target: a function of any bytes that returns when the product accepted the input or refused it with
/// its own documented error (the error its caller catches and turns into "close the connection" or "refuse the
/// config"). Anything else escapes: another exception type, a <see cref="FuzzFinding"/> (a broken property, a
/// hang), or a crash of the process. Constructors touch no Plover code: under afl-fuzz the instrumented assemblies
/// may run only inside SharpFuzz's loop, so product objects are created at the first input. Seeds are valid (or nearly valid) inputs built with the product's encoders,
/// the starting corpus the fuzzer mutates.
/// </summary>
public interface IFuzzTarget
{
    string Name { get; }
    string Description { get; }
    void Run(ReadOnlySpan<byte> input);
    /// <summary>What the last <see cref="Run"/> did: "accepted", or "refused: " and the product's reason.</summary>
    string LastOutcome { get; }
    IEnumerable<(string Name, byte[] Data)> Seeds();
}

/// <summary>An input that broke a property the target checks (not an exception the product threw).</summary>
public sealed class FuzzFinding(string message) : Exception(message);
