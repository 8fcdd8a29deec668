namespace Plover.Guard;

public enum OutputMode { Hold = 0, Pass = 1 }

/// <summary>
/// One NIC's output buffer in the host (QEMU: filter-plover via net_out_cut/release/discard/mode). The host tags
/// every frame the guest sends with the open epoch and holds it. MAIN-thread only, like the rest of VM control.
/// </summary>
public interface IOutputPort
{
    /// <summary>Seals the open epoch and returns its number (frames sent from now on belong to the next one).</summary>
    ulong Cut();
    /// <summary>Sends every held frame with epoch &lt;= uptoEpoch; returns frames sent.</summary>
    long Release(ulong uptoEpoch);
    /// <summary>Drops every held frame with epoch &lt;= uptoEpoch; returns frames dropped.</summary>
    long Discard(ulong uptoEpoch);
    /// <summary>Hold (tag and keep) or Pass (send at once).</summary>
    void SetMode(OutputMode mode);
}
