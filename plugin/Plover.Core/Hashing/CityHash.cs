using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Plover.Hashing;

/// <summary>
/// CityHash64 v1.1.1 (google/cityhash f5dc541), bit-exact for every length. Loads are little-endian.
/// v1.1 differs from v1.0.x (different short paths), so hashes only interoperate with v1.1.x.
/// </summary>
public static class CityHash
{
    internal const ulong K0 = 0xc3a5c85c97cb3127UL;
    internal const ulong K1 = 0xb492b66fbe98f273UL;
    internal const ulong K2 = 0x9ae16a3b2f90404fUL;
    internal const ulong KMul = 0x9ddfea08eb382d69UL; // Hash128to64's multiplier

    public static unsafe ulong Hash64(ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
            return Hash64(p, (nuint)data.Length);
    }

    /// <summary>CityHash64 of <paramref name="len"/> bytes at <paramref name="s"/> (any alignment).</summary>
    public static unsafe ulong Hash64(byte* s, nuint len)
    {
        if (len <= 32)
            return len <= 16 ? HashLen0To16(s, len) : HashLen17To32(s, len);
        if (len <= 64)
            return HashLen33To64(s, len);
        return HashLong(s, len);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe ulong Fetch64(byte* p) => BitConverter.IsLittleEndian
        ? Unsafe.ReadUnaligned<ulong>(p)
        : BinaryPrimitives.ReverseEndianness(Unsafe.ReadUnaligned<ulong>(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe uint Fetch32(byte* p) => BitConverter.IsLittleEndian
        ? Unsafe.ReadUnaligned<uint>(p)
        : BinaryPrimitives.ReverseEndianness(Unsafe.ReadUnaligned<uint>(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong ShiftMix(ulong v) => v ^ (v >> 47);

    /// <summary>Hash128to64(uint128(low = u, high = v)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong HashLen16(ulong u, ulong v) => HashLen16(u, v, KMul);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong HashLen16(ulong u, ulong v, ulong mul)
    {
        ulong a = (u ^ v) * mul;
        a ^= a >> 47;
        ulong b = (v ^ a) * mul;
        b ^= b >> 47;
        return b * mul;
    }

    private static unsafe ulong HashLen0To16(byte* s, nuint len)
    {
        if (len >= 8)
        {
            ulong mul = K2 + len * 2;
            ulong a = Fetch64(s) + K2;
            ulong b = Fetch64(s + len - 8);
            ulong c = BitOperations.RotateRight(b, 37) * mul + a;
            ulong d = (BitOperations.RotateRight(a, 25) + b) * mul;
            return HashLen16(c, d, mul);
        }
        if (len >= 4)
        {
            ulong mul = K2 + len * 2;
            ulong a = Fetch32(s);
            return HashLen16(len + (a << 3), Fetch32(s + len - 4), mul);
        }
        if (len > 0)
        {
            uint a = s[0];
            uint b = s[len >> 1];
            uint c = s[len - 1];
            uint y = a + (b << 8);
            uint z = (uint)len + (c << 2);
            return ShiftMix(y * K2 ^ z * K0) * K2;
        }
        return K2;
    }

    private static unsafe ulong HashLen17To32(byte* s, nuint len)
    {
        ulong mul = K2 + len * 2;
        ulong a = Fetch64(s) * K1;
        ulong b = Fetch64(s + 8);
        ulong c = Fetch64(s + len - 8) * mul;
        ulong d = Fetch64(s + len - 16) * K2;
        return HashLen16(BitOperations.RotateRight(a + b, 43) + BitOperations.RotateRight(c, 30) + d,
                         a + BitOperations.RotateRight(b + K2, 18) + c, mul);
    }

    private static unsafe ulong HashLen33To64(byte* s, nuint len)
    {
        ulong mul = K2 + len * 2;
        ulong a = Fetch64(s) * K2;
        ulong b = Fetch64(s + 8);
        ulong c = Fetch64(s + len - 24);
        ulong d = Fetch64(s + len - 32);
        ulong e = Fetch64(s + 16) * K2;
        ulong f = Fetch64(s + 24) * 9;
        ulong g = Fetch64(s + len - 8);
        ulong h = Fetch64(s + len - 16) * mul;
        ulong u = BitOperations.RotateRight(a + g, 43) + (BitOperations.RotateRight(b, 30) + c) * 9;
        ulong v = ((a + g) ^ d) + f + 1;
        ulong w = BinaryPrimitives.ReverseEndianness((u + v) * mul) + h;
        ulong x = BitOperations.RotateRight(e + f, 42) + c;
        ulong y = (BinaryPrimitives.ReverseEndianness((v + w) * mul) + g) * mul;
        ulong z = e + f + c;
        a = BinaryPrimitives.ReverseEndianness((x + z) * mul + y) + b;
        b = ShiftMix((z + a) * mul + d + h) * mul;
        return b + x;
    }

    /// <summary>The &gt; 64 byte path: a prologue over the last 64 bytes, then (len-1)/64 blocks from the start.</summary>
    private static unsafe ulong HashLong(byte* s, nuint len)
    {
        ulong x = Fetch64(s + len - 40);
        ulong y = Fetch64(s + len - 16) + Fetch64(s + len - 56);
        ulong z = HashLen16(Fetch64(s + len - 48) + len, Fetch64(s + len - 24));
        Weak(s + len - 64, len, z, out ulong v1, out ulong v2);
        Weak(s + len - 32, y + K1, x, out ulong w1, out ulong w2);
        x = x * K1 + Fetch64(s);

        nuint blocks = (len - 1) / 64;
        do
        {
            x = BitOperations.RotateRight(x + y + v1 + Fetch64(s + 8), 37) * K1;
            y = BitOperations.RotateRight(y + v2 + Fetch64(s + 48), 42) * K1;
            x ^= w2;
            y += v1 + Fetch64(s + 40);
            z = BitOperations.RotateRight(z + w1, 33) * K1;
            Weak(s, v2 * K1, x + w1, out v1, out v2);
            Weak(s + 32, z + w2, y + Fetch64(s + 16), out w1, out w2);
            (z, x) = (x, z);
            s += 64;
        } while (--blocks != 0);
        return HashLen16(HashLen16(v1, w1) + ShiftMix(y) * K1 + z, HashLen16(v2, w2) + x);
    }

    /// <summary>WeakHashLen32WithSeeds over the 4 words at s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void Weak(byte* s, ulong a, ulong b, out ulong first, out ulong second) =>
        Weak(Fetch64(s), Fetch64(s + 8), Fetch64(s + 16), Fetch64(s + 24), a, b, out first, out second);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Weak(ulong w, ulong x, ulong y, ulong z, ulong a, ulong b, out ulong first, out ulong second)
    {
        a += w;
        b = BitOperations.RotateRight(b + a + z, 21);
        ulong c = a;
        a += x;
        a += y;
        b += BitOperations.RotateRight(a, 44);
        first = a + z;
        second = b + c;
    }
}
