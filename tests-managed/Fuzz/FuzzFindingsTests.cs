using Xunit;

namespace Plover.Tests.Fuzz;

/// <summary>The bugs fuzzing found, one test each, driven by the input kept in fuzz/corpus (regression-*): what the
/// product does with it now.</summary>
public sealed class FuzzFindingsTests(FuzzTargetsFixture targets) : IClassFixture<FuzzTargetsFixture>
{
    private static byte[] Input(string target, string name) => File.ReadAllBytes(Path.Combine(FuzzTargetsFixture.CorpusDir, target, name));

    /// <summary>Device state in three chunks whose second declares a total of 0, below the byte already received:
    /// the check "chunk fits in what is left" underflowed, so the chunk was taken, and the third chunk (total 6 again)
    /// completed the sync. A primary could change the total mid-transfer and stream past the limit. Now every chunk
    /// must declare the first chunk's total.</summary>
    [Fact]
    public void DeviceState_WhoseTotalChangesMidTransfer_AbortsTheSync()
    {
        var sync = targets["sync"];
        sync.Run(Input("sync", "regression-device-total-changes"));
        // the second chunk, [1, +2) of a total of 0, after 1 byte of the first chunk's 6
        Assert.StartsWith("refused: device state frame e7 [1, +2) of 0 (e7, 1 of 6 received", sync.LastOutcome);
    }

    /// <summary>The same bug as AFL++ found it (crash id 0 of the sync run, 1,180,799 executions in, on the build
    /// before the fix): the first chunk declares 33 bytes, the next two 6, and the sync completed with 6 bytes.</summary>
    [Fact]
    public void DeviceState_WhoseFirstChunkDeclaresAnotherTotal_AbortsTheSync()
    {
        var sync = targets["sync"];
        sync.Run(Input("sync", "regression-device-total-from-fuzzer"));
        Assert.StartsWith("refused: device state frame e7 [1, +2) of 6 (e7, 1 of 33 received", sync.LastOutcome);
    }
}
