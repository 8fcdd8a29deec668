using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace Plover.Hashing;

/// <summary>
/// CityHash64 of one 4 KiB page at a time, specialised for len = 4096 (the &gt; 64 byte path: a prologue over
/// bytes 4032..4095, then 63 blocks over bytes 0..4031), prefetching one line of the next page per block.
/// </summary>
internal static unsafe class ScalarPageKernel
{
    internal const int PageSize = 4096;
    private const int LastBlock = PageSize - 64;

    /// <summary>Hashes pages[0..count) into hashes[0..count); next[0] is the page after the group (for prefetch).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void HashGroup(byte** pages, int count, byte** next, ulong* hashes, bool prefetch)
    {
        for (int i = 0; i < count; i++)
        {
            byte* following = i + 1 < count ? pages[i + 1] : next[0];
            hashes[i] = prefetch ? HashPage<PrefetchOn>(pages[i], following) : HashPage<PrefetchOff>(pages[i], following);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static ulong HashPage<TPf>(byte* s, byte* next) where TPf : struct, IPrefetchPolicy
    {
        const ulong len = PageSize;
        const ulong k1 = CityHash.K1;
        if (TPf.Enabled) Sse.Prefetch0(next + LastBlock);

        byte* last = s + LastBlock;
        ulong x = CityHash.Fetch64(last + 24);                            // len - 40
        ulong y = CityHash.Fetch64(last + 48) + CityHash.Fetch64(last + 8); // len - 16, len - 56
        ulong z = CityHash.HashLen16(CityHash.Fetch64(last + 16) + len, CityHash.Fetch64(last + 40));
        CityHash.Weak(last, len, z, out ulong v1, out ulong v2);
        CityHash.Weak(last + 32, y + k1, x, out ulong w1, out ulong w2);
        x = x * k1 + CityHash.Fetch64(s);

        for (nuint off = 0; off < LastBlock; off += 64)
        {
            if (TPf.Enabled) Sse.Prefetch0(next + off);
            byte* b = s + off;
            ulong b0 = CityHash.Fetch64(b), b1 = CityHash.Fetch64(b + 8), b2 = CityHash.Fetch64(b + 16), b3 = CityHash.Fetch64(b + 24);
            ulong b4 = CityHash.Fetch64(b + 32), b5 = CityHash.Fetch64(b + 40), b6 = CityHash.Fetch64(b + 48), b7 = CityHash.Fetch64(b + 56);
            x = BitOperations.RotateRight(x + y + v1 + b1, 37) * k1;
            y = BitOperations.RotateRight(y + v2 + b6, 42) * k1;
            x ^= w2;
            y += v1 + b5;
            z = BitOperations.RotateRight(z + w1, 33) * k1;
            CityHash.Weak(b0, b1, b2, b3, v2 * k1, x + w1, out v1, out v2);
            CityHash.Weak(b4, b5, b6, b7, z + w2, y + b2, out w1, out w2);
            (z, x) = (x, z);
        }
        return CityHash.HashLen16(CityHash.HashLen16(v1, w1) + CityHash.ShiftMix(y) * k1 + z,
                                  CityHash.HashLen16(v2, w2) + x);
    }
}
