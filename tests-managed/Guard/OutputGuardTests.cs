using Plover.Guard;
using Xunit;

namespace Plover.Tests.Guard;

public class OutputGuardTests
{
    private readonly List<string> _log = new();
    private OutputGuard NewGuard(GuardRole role, params FakeOutputPort[] nics) => new(role, nics, _log.Add);

    [Fact]
    public void Primary_ReleasesAnEpochOnlyAfterItsSync_AndOnlyUpToItsCut()
    {
        var nic0 = new FakeOutputPort();
        var nic1 = new FakeOutputPort();
        var guard = NewGuard(GuardRole.Primary, nic0, nic1);
        guard.Start();
        nic0.GuestSends(1); nic1.GuestSends(11);
        guard.CutEpoch(1);                        // sync 1 stops the VM
        nic0.GuestSends(2);                       // epoch 2 (after the resume of sync 1)
        Assert.Empty(nic0.Sent);
        Assert.Empty(nic1.Sent);
        guard.CutEpoch(2);
        nic0.GuestSends(3);

        guard.EpochSynced(1);                     // ack of sync 1
        Assert.Equal([1], nic0.Sent);
        Assert.Equal([11], nic1.Sent);
        guard.EpochSynced(2);
        Assert.Equal([1, 2], nic0.Sent);          // frame 3 belongs to the open epoch: still held
        Assert.Equal(1, nic0.Held);
        Assert.Empty(nic0.Dropped);
        Assert.Equal(0, guard.PendingEpochs);
    }

    [Fact]
    public void Primary_AckOfALaterSyncReleasesEarlierUnackedEpochs()
    {
        var nic = new FakeOutputPort();
        var guard = NewGuard(GuardRole.Primary, nic);
        nic.GuestSends(1);
        guard.CutEpoch(1);                        // sync 1 aborted: no ack, still held
        nic.GuestSends(2);
        guard.CutEpoch(2);
        Assert.Empty(nic.Sent);
        guard.EpochSynced(2);
        Assert.Equal([1, 2], nic.Sent);
    }

    [Fact]
    public void Backup_DiscardsItsOwnOutput_NeverSendsIt()
    {
        var nic = new FakeOutputPort();
        var guard = NewGuard(GuardRole.Backup, nic);
        nic.GuestSends(1);
        guard.CutEpoch(1);
        nic.GuestSends(2);
        guard.EpochSynced(1);
        Assert.Equal([1], nic.Dropped);
        Assert.Empty(nic.Sent);
        Assert.Equal(1, nic.Held);
    }

    [Fact]
    public void Promotion_ReleasesEverythingHeld_ThenReleasesOutputAsItComes()
    {
        var nic = new FakeOutputPort();
        var guard = NewGuard(GuardRole.Backup, nic);
        nic.GuestSends(1);
        guard.CutEpoch(1);
        nic.GuestSends(2);                        // the primary died: state 1 never applied
        Assert.Equal(0, guard.ReleaseUnprotected());   // a backup never releases
        Assert.Equal(2, guard.Promote());
        Assert.Equal([1, 2], nic.Sent);
        Assert.Equal(OutputMode.Hold, nic.Mode);  // the host always holds: every frame leaves through the guard
        Assert.Equal(GuardState.Unprotected, guard.State);
        nic.GuestSends(3);
        Assert.Equal([1, 2], nic.Sent);
        Assert.Equal(1, guard.ReleaseUnprotected());   // the host's notice that frame 3 is held
        Assert.Equal([1, 2, 3], nic.Sent);
        Assert.Equal(GuardRole.Primary, guard.Role);
    }

    [Fact]
    public void Demote_TurnsADeposedPrimaryIntoABackupThatDiscardsWhatItHeld()
    {
        var nic = new FakeOutputPort();
        var guard = NewGuard(GuardRole.Primary, nic);
        nic.GuestSends(1);
        guard.CutEpoch(7);
        guard.Fence("term 3");
        nic.GuestSends(2);
        Assert.Equal(2, guard.Demote());
        Assert.Equal([1, 2], nic.Dropped);
        Assert.Empty(nic.Sent);
        Assert.Equal((GuardRole.Backup, GuardState.Holding), (guard.Role, guard.State));
        nic.GuestSends(3);
        guard.CutEpoch(1);                        // epochs of the new primary, lower than the deposed one's
        guard.EpochSynced(1);
        Assert.Equal([1, 2, 3], nic.Dropped);
        Assert.Empty(nic.Sent);
    }

    [Fact]
    public void Fenced_NeverReleasesAgain_WhateverIsCalled()
    {
        var nic = new FakeOutputPort();
        var guard = NewGuard(GuardRole.Primary, nic);
        nic.GuestSends(1);
        guard.CutEpoch(1);
        guard.Fence("term 7 > 6");
        guard.EpochSynced(1);
        guard.RunUnprotected("ROLE");
        guard.CutEpoch(2);
        Assert.Throws<InvalidOperationException>(() => guard.Promote());
        Assert.Empty(nic.Sent);
        Assert.Equal(GuardState.Fenced, guard.State);
        Assert.Contains(_log, l => l.Contains("FENCED"));
    }

    [Fact]
    public void FenceRacingReleases_NoReleaseStartsAfterFenceReturned()
    {
        for (int trial = 0; trial < 20; trial++)
        {
            var nic = new FakeOutputPort();
            var guard = new OutputGuard(GuardRole.Primary, [nic], _ => { });
            int sentAtFence = -1;
            var releaser = new Thread(() =>
            {
                for (ulong e = 1; e < 2000; e++)
                {
                    nic.GuestSends((int)e);
                    guard.CutEpoch(e);
                    guard.EpochSynced(e);
                }
            });
            releaser.Start();
            Thread.Sleep(trial % 3);
            guard.Fence("deposed");
            lock (nic) sentAtFence = nic.Sent.Count;
            releaser.Join();
            Assert.Equal(sentAtFence, nic.Sent.Count);
        }
    }

    [Fact]
    public void RunUnprotected_ReleasesHeldOutput_AndProtectHoldsAgain()
    {
        var nic = new FakeOutputPort();
        var guard = NewGuard(GuardRole.Primary, nic);
        nic.GuestSends(1);
        guard.CutEpoch(1);                        // the backup died during sync 1: no ack
        nic.GuestSends(2);
        Assert.Empty(nic.Sent);                   // the engine alone never releases
        guard.RunUnprotected("ROLE entry at index 90: primary runs alone");
        Assert.Equal([1, 2], nic.Sent);
        nic.GuestSends(3);
        guard.ReleaseUnprotected();
        Assert.Equal([1, 2, 3], nic.Sent);
        Assert.Contains(_log, l => l.Contains("UNPROTECTED"));

        guard.Protect();                          // a backup is back
        nic.GuestSends(4);
        Assert.Equal(0, guard.ReleaseUnprotected());
        guard.CutEpoch(2);
        Assert.Equal([1, 2, 3], nic.Sent);
        guard.EpochSynced(2);
        Assert.Equal([1, 2, 3, 4], nic.Sent);
    }

    [Fact]
    public void EpochsMustIncrease()
    {
        var guard = NewGuard(GuardRole.Primary, new FakeOutputPort());
        guard.CutEpoch(5);
        Assert.Throws<InvalidOperationException>(() => guard.CutEpoch(5));
        guard.EpochSynced(5);
        Assert.Throws<InvalidOperationException>(() => guard.EpochSynced(4));
    }
}
