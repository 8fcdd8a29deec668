namespace Plover.Sync;

/// <summary>
/// Makes two copies of a page differ the way the two replicas' pages differ under a real workload (tests and
/// <c>bench sync</c>). Shapes follow what the backup measured on a replicated Redis under SET load (issue 12, 16,642
/// divergent pages): 57% of divergent pages differ in 1-8 bytes, 26% in 9-64, 13% in 65-512, 3.7% in 513-4095 and
/// 0.3% in every byte; on average 5.7 of a page's 64 blocks of 64 bytes differ (2.9 of 16 blocks of 256 bytes).
/// The differing bytes come in short runs at random places (a timestamp, a counter, a list pointer), a few of them
/// per page, and the larger cases as one long run (a buffer); <see cref="Apply"/> returns how many bytes it made
/// differ, so a test can check the histogram. Every byte inside a run differs (the backup's byte is the primary's
/// XOR a non-zero value).
/// </summary>
public static class SyntheticDivergence
{
    /// <summary>Writes a divergence into primary and backup (two copies of the same 4096-byte page, identical
    /// before) and returns the number of bytes that now differ.</summary>
    public static int Apply(Random rng, Span<byte> primary, Span<byte> backup)
    {
        if (primary.Length != GuestRamBlock.PageSize || backup.Length != GuestRamBlock.PageSize)
            throw new ArgumentException("a divergence is made in one 4096-byte page");
        Span<bool> differs = stackalloc bool[GuestRamBlock.PageSize];
        double u = rng.NextDouble();
        if (u < 0.57)
        {
            // 1-8 bytes: one word of which some low bytes changed (a counter, a timestamp), sometimes two
            int runs = rng.NextDouble() < 0.35 ? 2 : 1;
            for (int r = 0; r < runs; r++) Run(rng, differs, rng.Next(GuestRamBlock.PageSize / 8) * 8, 1 + rng.Next(runs == 1 ? 8 : 4));
        }
        else if (u < 0.83)
        {
            // 9-64 bytes: a few fields in different places
            int budget = 9 + rng.Next(56);
            int near = Cluster(rng);
            while (budget > 0)
            {
                int n = Math.Min(budget, 1 + rng.Next(8));
                Run(rng, differs, Place(rng, near, n), n);
                budget -= n;
            }
        }
        else if (u < 0.96)
        {
            // 65-512 bytes: many fields (a packet header, a list of structures)
            int budget = 65 + rng.Next(448);
            int window = rng.Next(2) == 0 ? GuestRamBlock.PageSize : 1024;
            int near = rng.Next(GuestRamBlock.PageSize - window + 1);
            while (budget > 0)
            {
                int n = Math.Min(budget, 4 + rng.Next(21));
                Run(rng, differs, near + rng.Next(window - n + 1), n);
                budget -= n;
            }
        }
        else if (u < 0.997)
        {
            // 513-4095 bytes: one buffer
            int n = 513 + rng.Next(GuestRamBlock.PageSize - 513);
            Run(rng, differs, rng.Next(GuestRamBlock.PageSize - n + 1), n);
        }
        else
        {
            Run(rng, differs, 0, GuestRamBlock.PageSize);
        }

        // The same new values on both sides everywhere, the backup's differing where the runs are.
        int count = 0;
        for (int i = 0; i < GuestRamBlock.PageSize; i++)
        {
            if (!differs[i]) continue;
            byte value = (byte)rng.Next(256);
            primary[i] = value;
            backup[i] = (byte)(value ^ (1 + rng.Next(255)));
            count++;
        }
        return count;
    }

    /// <summary>Fields of one structure lie close together: runs of one page are placed within a window of
    /// <see cref="ClusterBytes"/> around a random spot (or anywhere, for a third of the pages).</summary>
    private const int ClusterBytes = 256;

    private static int Cluster(Random rng) => rng.Next(4) == 0 ? -1 : rng.Next(GuestRamBlock.PageSize - ClusterBytes + 1);

    private static int Place(Random rng, int near, int n) =>
        near < 0 || n > ClusterBytes ? rng.Next(GuestRamBlock.PageSize - n + 1) : near + rng.Next(ClusterBytes - n + 1);

    private static void Run(Random rng, Span<bool> differs, int offset, int length) => differs.Slice(offset, length).Fill(true);
}
