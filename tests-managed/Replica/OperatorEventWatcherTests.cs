using Plover.Node;
using Xunit;

namespace Plover.Tests.Replica;

/// <summary>The state changes that become QMP events (PLOVER_ROLE_CHANGED, _PROTECTION_LOST, _RESTORED, _FENCED).</summary>
public sealed class OperatorEventWatcherTests
{
    private readonly OperatorEventWatcher _watcher = new();
    private readonly List<OperatorEvent> _events = [];
    private string _problem = "no sync connection to node 2";

    private void Observe(OperatorRole role, long term, bool isProtected, int backup = 0, long fences = 0, string fenceReason = "") =>
        _watcher.Observe(new OperatorState(role, term, isProtected, backup, fences, fenceReason), () => _problem, _events.Add);

    [Fact]
    public void Start_as_primary_then_protected_gives_a_role_change_then_protection_restored()
    {
        Observe(OperatorRole.Starting, 0, false);
        Assert.Empty(_events);
        Observe(OperatorRole.Primary, 1, false, 2);
        Observe(OperatorRole.Primary, 1, true, 2);
        Observe(OperatorRole.Primary, 1, true, 2);   // unchanged: nothing
        Assert.Equal([OperatorEventKind.RoleChanged, OperatorEventKind.ProtectionRestored], _events.Select(e => e.Kind));
        Assert.Equal((OperatorRole.Primary, OperatorRole.Starting, 1L), (_events[0].Role, _events[0].Previous, _events[0].Term));
        Assert.Equal("starting -> primary in term 1", _events[0].Reason);
        Assert.Equal(2, _events[1].BackupId);
    }

    [Fact]
    public void Losing_the_backup_gives_protection_lost_with_the_problem()
    {
        Observe(OperatorRole.Primary, 1, true, 2);
        _events.Clear();
        _problem = "running unprotected (no backup)";
        Observe(OperatorRole.Primary, 1, false, 0);
        var lost = Assert.Single(_events);
        Assert.Equal(OperatorEventKind.ProtectionLost, lost.Kind);
        Assert.Equal("running unprotected (no backup)", lost.Reason);
        Assert.Equal(2, lost.BackupId);
    }

    [Fact]
    public void A_fence_and_its_standby_in_one_step_still_give_fenced_then_lost_then_the_role_change()
    {
        Observe(OperatorRole.Primary, 3, true, 2);
        _events.Clear();
        // fenced and already back to a standby backup between two observations: the flag is never seen, the count is
        Observe(OperatorRole.Backup, 4, false, 0, fences: 1, fenceReason: "deposed as leader of ballot 3.1: LostQuorum");
        Assert.Equal([OperatorEventKind.Fenced, OperatorEventKind.ProtectionLost, OperatorEventKind.RoleChanged],
            _events.Select(e => e.Kind));
        Assert.Equal("deposed as leader of ballot 3.1: LostQuorum", _events[0].Reason);
        Assert.Equal((OperatorRole.Backup, OperatorRole.Primary, 4L), (_events[2].Role, _events[2].Previous, _events[2].Term));
    }

    [Fact]
    public void A_backup_promoted_gives_one_role_change_and_no_protection_event_until_a_backup_synced()
    {
        Observe(OperatorRole.Backup, 1, false);
        _events.Clear();
        Observe(OperatorRole.Primary, 2, false);
        var promoted = Assert.Single(_events);
        Assert.Equal((OperatorEventKind.RoleChanged, OperatorRole.Primary, OperatorRole.Backup), (promoted.Kind, promoted.Role, promoted.Previous));
        Observe(OperatorRole.Primary, 2, true, 1);
        Assert.Equal(OperatorEventKind.ProtectionRestored, _events[^1].Kind);
        Assert.Equal(1, _events[^1].BackupId);
    }
}
