namespace Plover.Sync;

/// <summary>
/// One guest RAM block as the host exports it (PloverRamBlock): host-owned memory and dirty bitmap, valid from
/// machine_ready until shutdown. Bit i of word i/64 of <see cref="Dirty"/> is page i (4096 bytes).
/// </summary>
public readonly unsafe struct GuestRamBlock(string name, byte* host, ulong length, ulong* dirty)
{
    public const int PageSize = 4096;

    /// <summary>RAMBlock idstr, identical on both replicas ("pc.ram").</summary>
    public string Name { get; } = name;
    /// <summary>Guest RAM, zero copy.</summary>
    public byte* Host { get; } = host;
    /// <summary>Bytes, a multiple of the page size.</summary>
    public ulong Length { get; } = length;
    /// <summary>Host-owned dirty bitmap, <see cref="Words"/> words; filled by the host's dirty sync.</summary>
    public ulong* Dirty { get; } = dirty;

    public ulong Pages => Length / PageSize;
    public ulong Words => (Pages + 63) / 64;
}
