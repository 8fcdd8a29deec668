using Plover.Sync;
using Xunit;

namespace Plover.Tests.Sync;

/// <summary>
/// Each side's device state save at the cut runs on its main thread while its sync thread exchanges bitmaps and
/// hashes, instead of before them: a slow save no longer delays the peer. The guest never runs during a save
/// (the synthetic VM refuses a save of a running VM), and what is loaded is still the state at the cut.
/// </summary>
public class DeviceSaveOverlapTests
{
    private static readonly (string, ulong)[] Layout = [("pc.ram", 1UL << 20)];

    [Theory]
    [InlineData(ResumePoint.Bitmaps, true)]
    [InlineData(ResumePoint.Compare, true)]
    [InlineData(ResumePoint.Bitmaps, false)]
    public void TheBitmapsAreExchangedWhileBothSidesSave_AndTheBackupLoadsTheStateAtTheCut(ResumePoint point, bool earlyResume)
    {
        using var primaryExchanged = new ManualResetEventSlim();
        using var backupExchanged = new ManualResetEventSlim();
        var primary = new SyncOptions { ResumePoint = point, EarlyResume = earlyResume, Log = _ => { },
                                        StepHook = (_, step) => { if (step == SyncStep.BitmapsExchanged) primaryExchanged.Set(); } };
        var backup = new SyncOptions { Log = _ => { },
                                       StepHook = (_, step) => { if (step == SyncStep.BitmapsExchanged) backupExchanged.Set(); } };
        using var pair = new SyncPair(Layout, primary, backup);
        pair.PrimaryVm.SetDeviceSections([("cpu", [1, 2, 3]), ("timer", [4, 5])]);
        pair.BackupVm.SetDeviceSections([("cpu", [9, 9, 9]), ("timer", [4, 5])]);
        byte[] atCut = pair.PrimaryVm.DeviceState;
        // Each save holds its main thread until that side's bitmaps are exchanged: before the saves were posted,
        // the primary saved before exchanging anything (and the backup after its hashes), so this waited in vain.
        bool primaryOverlapped = false, backupOverlapped = false;
        pair.PrimaryVm.DuringSave = () => primaryOverlapped = primaryExchanged.Wait(TimeSpan.FromSeconds(3));
        pair.BackupVm.DuringSave = () => backupOverlapped = backupExchanged.Wait(TimeSpan.FromSeconds(3));

        var (p, b) = pair.Sync(1);

        Assert.Equal(SyncOutcome.Completed, p.Outcome);
        Assert.Equal(SyncOutcome.Completed, b.Outcome);
        Assert.True(primaryOverlapped, "the primary saved its devices before exchanging bitmaps");
        Assert.True(backupOverlapped, "the backup saved its devices after exchanging bitmaps only");
        Assert.Equal(atCut, pair.BackupVm.DeviceState);
        Assert.True(p.Pause.DeviceSave > 0 && b.Pause.DeviceSave > 0, $"{p.Pause.DeviceSave} / {b.Pause.DeviceSave}");
        Assert.Equal((ulong)atCut.Length, p.DeviceStateSavedBytes);
        Assert.Equal(1u, p.DeviceSectionsSent);   // the CPU; the timer is the same on both
    }

    [Fact]
    public void A_save_that_fails_aborts_the_sync_and_the_guest_runs_again()
    {
        using var pair = new SyncPair(Layout, new SyncOptions { Log = _ => { } }, new SyncOptions { Log = _ => { } });
        pair.PrimaryVm.DuringSave = () => throw new InvalidOperationException("device refused to save (injected)");
        var (p, b) = pair.Sync(1);
        Assert.Equal(SyncOutcome.Aborted, p.Outcome);
        Assert.Contains("device refused to save", p.Error);
        Assert.Equal(SyncOutcome.Aborted, b.Outcome);
        Assert.True(pair.PrimaryVm.Running);
        Assert.True(pair.BackupVm.Running);
    }
}
