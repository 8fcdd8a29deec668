namespace Plover.Config;

/// <summary>What libplover does inside QEMU (config key "mode").</summary>
public enum LibraryMode
{
    /// <summary>The product: consensus on inputs, syncvm, output guard, failover.</summary>
    Replicate,
    /// <summary>Attach and observe only: the VM is driven by hand through the admin socket (inject, steal,
    /// out-cut/release, dirty-sync, ...). For bring-up and tests of the QEMU integration; never replicates.</summary>
    Probe,
}
