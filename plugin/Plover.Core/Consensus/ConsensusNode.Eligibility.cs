namespace Plover.Consensus;

/// <summary>
/// Who may lead. A failover must keep the VM state, not only the log: a ROLE entry names the primary and the
/// backup it syncs (0: it runs alone and releases output unprotected). A node the latest ROLE entry names neither
/// primary nor backup has a stale VM that misses output the world has seen, so electing it would lose
/// acknowledged writes although the log is whole (and it could not serve anyway, so it would only block the one
/// that can). So such a node does not campaign, and voters refuse it their pre-vote and their promise (refusing a
/// promise is always safe). In a cluster of three, a ROLE entry a follower holds was accepted by its leader too, so
/// it is chosen. Without any known ROLE entry (a fresh cluster, or entries skipped through a snapshot) every node
/// that can lead may. A consequence recovery relies on: once ROLE(X, no backup) is chosen, only X can lead until X
/// itself proposes another ROLE entry (any majority a candidate needs holds that entry).
/// </summary>
public sealed partial class ConsensusNode
{
    private (int Primary, int Backup)? _roleBeforeLog;   // the latest ROLE among entries compacted away, if known

    /// <summary>The latest ROLE entry this node holds (primary, backup), or null if it knows of none.</summary>
    public (int Primary, int Backup)? LatestRole
    {
        get
        {
            for (long i = _log.LastIndex; i >= _log.FirstIndex; i--)
                if (RoleOf(_log[i]) is { } role) return role;
            return _roleBeforeLog;
        }
    }

    private bool MayLead(int candidate) => LatestRole is not { } r || candidate == r.Primary || candidate == r.Backup;

    private static (int Primary, int Backup)? RoleOf(in LogEntry e)
    {
        if (e.Type != EntryType.Role) return null;
        try
        {
            var (_, primary, backup) = EntryPayloads.DecodeRole(e.Payload.Span);
            return (primary, backup);
        }
        catch (FormatException) { return null; }
    }

    /// <summary>Drops the log through index, keeping the latest ROLE entry among the dropped ones in mind; entries
    /// past the log's end are skipped unseen, so what came before them no longer counts.</summary>
    private void CompactLog(long index)
    {
        if (index < _log.FirstIndex) return;
        if (index > _log.LastIndex) _roleBeforeLog = null;
        else
            for (long i = index; i >= _log.FirstIndex; i--)
                if (RoleOf(_log[i]) is { } role) { _roleBeforeLog = role; break; }
        _log.CompactThrough(index);
    }
}
