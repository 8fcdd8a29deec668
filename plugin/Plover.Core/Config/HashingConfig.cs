namespace Plover.Config;

/// <summary>Page hashing: Threads 0 means every core.</summary>
public sealed record HashingConfig(int Threads)
{
    public const int MaxThreads = 1024;
    public static readonly HashingConfig Default = new(0);
}
