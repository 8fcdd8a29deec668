namespace Plover.Sync;

/// <summary>How the epoch a sync closes reached its cut, on this replica: how long before the replica's vm_stop
/// each last event of the epoch happened, in microseconds (-1: none in this epoch). With one closed-loop client
/// each epoch holds one request, so the gaps between them are where its time went before the sync.</summary>
public readonly record struct SyncLead(
    double InputArrived,     // primary: the last frame the guest was sent, taken for proposal
    double InputCommitted,   // the last INPUT entry committed (primary: the consensus thread learnt it)
    double InputInjected,    // the last INPUT entry handed to the guest (its NIC)
    double OutputHeld,       // the guest's last frame out, held by the output guard
    double IdleTriggered,    // primary: the idle monitor (or the epoch limit) asked for a sync
    double SyncProposed)     // primary: the SYNC entry proposed
{
    public static SyncLead None { get; } = new(-1, -1, -1, -1, -1, -1);
}
