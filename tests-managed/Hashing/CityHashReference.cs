namespace Plover.Tests.Hashing;

/// <summary>
/// A deliberately plain CityHash64 v1.1.1 written from city.cc for the tests: array indexing, byte-by-byte
/// little-endian loads, no pointers, no intrinsics, no shared code with Plover.Hashing.
/// </summary>
internal static class CityHashReference
{
    private const ulong K0 = 0xc3a5c85c97cb3127UL;
    private const ulong K1 = 0xb492b66fbe98f273UL;
    private const ulong K2 = 0x9ae16a3b2f90404fUL;

    public static ulong Hash64(byte[] data, int offset, int length)
    {
        var s = new Reader(data, offset);
        ulong len = (ulong)length;
        if (length <= 16) return Len0To16(s, length);
        if (length <= 32) return Len17To32(s, length);
        if (length <= 64) return Len33To64(s, length);

        ulong x = s.U64(length - 40);
        ulong y = s.U64(length - 16) + s.U64(length - 56);
        ulong z = HashLen16(s.U64(length - 48) + len, s.U64(length - 24));
        var v = Weak(s, length - 64, len, z);
        var w = Weak(s, length - 32, y + K1, x);
        x = x * K1 + s.U64(0);
        int pos = 0;
        int remaining = (length - 1) & ~63;
        do
        {
            x = Ror(x + y + v.first + s.U64(pos + 8), 37) * K1;
            y = Ror(y + v.second + s.U64(pos + 48), 42) * K1;
            x ^= w.second;
            y += v.first + s.U64(pos + 40);
            z = Ror(z + w.first, 33) * K1;
            v = Weak(s, pos, v.second * K1, x + w.first);
            w = Weak(s, pos + 32, z + w.second, y + s.U64(pos + 16));
            (z, x) = (x, z);
            pos += 64;
            remaining -= 64;
        } while (remaining != 0);
        return HashLen16(HashLen16(v.first, w.first) + ShiftMix(y) * K1 + z, HashLen16(v.second, w.second) + x);
    }

    private static ulong Len0To16(Reader s, int length)
    {
        ulong len = (ulong)length;
        if (length >= 8)
        {
            ulong mul = K2 + len * 2;
            ulong a = s.U64(0) + K2;
            ulong b = s.U64(length - 8);
            ulong c = Ror(b, 37) * mul + a;
            ulong d = (Ror(a, 25) + b) * mul;
            return HashLen16(c, d, mul);
        }
        if (length >= 4)
        {
            ulong mul = K2 + len * 2;
            ulong a = s.U32(0);
            return HashLen16(len + (a << 3), s.U32(length - 4), mul);
        }
        if (length > 0)
        {
            uint a = s.U8(0), b = s.U8(length >> 1), c = s.U8(length - 1);
            uint y = a + (b << 8);
            uint z = (uint)length + (c << 2);
            return ShiftMix(y * K2 ^ z * K0) * K2;
        }
        return K2;
    }

    private static ulong Len17To32(Reader s, int length)
    {
        ulong mul = K2 + (ulong)length * 2;
        ulong a = s.U64(0) * K1;
        ulong b = s.U64(8);
        ulong c = s.U64(length - 8) * mul;
        ulong d = s.U64(length - 16) * K2;
        return HashLen16(Ror(a + b, 43) + Ror(c, 30) + d, a + Ror(b + K2, 18) + c, mul);
    }

    private static ulong Len33To64(Reader s, int length)
    {
        ulong mul = K2 + (ulong)length * 2;
        ulong a = s.U64(0) * K2;
        ulong b = s.U64(8);
        ulong c = s.U64(length - 24);
        ulong d = s.U64(length - 32);
        ulong e = s.U64(16) * K2;
        ulong f = s.U64(24) * 9;
        ulong g = s.U64(length - 8);
        ulong h = s.U64(length - 16) * mul;
        ulong u = Ror(a + g, 43) + (Ror(b, 30) + c) * 9;
        ulong v = ((a + g) ^ d) + f + 1;
        ulong w = Bswap((u + v) * mul) + h;
        ulong x = Ror(e + f, 42) + c;
        ulong y = (Bswap((v + w) * mul) + g) * mul;
        ulong z = e + f + c;
        a = Bswap((x + z) * mul + y) + b;
        b = ShiftMix((z + a) * mul + d + h) * mul;
        return b + x;
    }

    private static (ulong first, ulong second) Weak(Reader s, int pos, ulong a, ulong b)
    {
        ulong w = s.U64(pos), x = s.U64(pos + 8), y = s.U64(pos + 16), z = s.U64(pos + 24);
        a += w;
        b = Ror(b + a + z, 21);
        ulong c = a;
        a += x;
        a += y;
        b += Ror(a, 44);
        return (a + z, b + c);
    }

    private static ulong HashLen16(ulong u, ulong v) => HashLen16(u, v, 0x9ddfea08eb382d69UL);

    private static ulong HashLen16(ulong u, ulong v, ulong mul)
    {
        ulong a = (u ^ v) * mul;
        a ^= a >> 47;
        ulong b = (v ^ a) * mul;
        b ^= b >> 47;
        return b * mul;
    }

    private static ulong ShiftMix(ulong v) => v ^ (v >> 47);

    private static ulong Ror(ulong v, int r) => (v >> r) | (v << (64 - r));

    private static ulong Bswap(ulong v)
    {
        ulong r = 0;
        for (int i = 0; i < 8; i++)
            r = (r << 8) | ((v >> (8 * i)) & 0xff);
        return r;
    }

    private readonly struct Reader(byte[] data, int offset)
    {
        public uint U8(int i) => data[offset + i];

        public ulong U32(int i)
        {
            ulong r = 0;
            for (int k = 3; k >= 0; k--)
                r = (r << 8) | data[offset + i + k];
            return r;
        }

        public ulong U64(int i)
        {
            ulong r = 0;
            for (int k = 7; k >= 0; k--)
                r = (r << 8) | data[offset + i + k];
            return r;
        }
    }
}
