namespace Plover.Sync;

/// <summary>
/// The guest's RAM as the host exports it. The block list is fixed once the machine is ready. The engine reads
/// and writes the blocks and their dirty bitmaps only on its own threads while the VM is stopped (between its
/// own vm_stop and vm_start), never while the guest runs.
/// </summary>
public interface IGuestMemory
{
    IReadOnlyList<GuestRamBlock> Blocks { get; }
}
