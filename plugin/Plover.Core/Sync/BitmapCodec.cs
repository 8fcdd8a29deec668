using System.Buffers.Binary;
using System.Numerics;
using Plover.Wire;

namespace Plover.Sync;

/// <summary>
/// Encodes a dirty bitmap for the wire in whichever of three forms is smallest, measured exactly before encoding:
/// RAW (the words; best for dense bitmaps), SPARSE (delta word index + word for each non-zero word; best for
/// clustered dirt) and RUNS (alternating clear/set run lengths as varints; best for scattered pages and for long
/// runs such as an all-dirty full sync). Decoding ORs into a destination bitmap and never trusts the input:
/// anything out of range fails with a reason.
/// </summary>
public static unsafe class BitmapCodec
{
    /// <summary>Exact encoded sizes of all three forms.</summary>
    public static (long Raw, long Sparse, long Runs) Sizes(ulong* words, ulong count)
    {
        long sparse = 0, runs = 0;
        ulong prevNonZero = 0;
        bool first = true;
        var walker = new RunWalker(words, count);
        while (walker.Next(out ulong run)) runs += VarintSize(run);
        for (ulong w = 0; w < count; w++)
        {
            if (words[w] == 0) continue;
            sparse += VarintSize(first ? w : w - prevNonZero) + 8;
            prevNonZero = w;
            first = false;
        }
        return ((long)count * 8, sparse, runs);
    }

    public static BitmapEncoding Choose(ulong* words, ulong count, out long size)
    {
        var (raw, sparse, runs) = Sizes(words, count);
        if (runs <= sparse && runs < raw) { size = runs; return BitmapEncoding.BitmapRuns; }
        if (sparse < raw) { size = sparse; return BitmapEncoding.BitmapSparse; }
        size = raw;
        return BitmapEncoding.BitmapRaw;
    }

    /// <summary>Writes the bitmap in the given form into dest (sized with <see cref="Sizes"/>); returns bytes written.</summary>
    public static int Encode(ulong* words, ulong count, BitmapEncoding encoding, Span<byte> dest)
    {
        int at = 0;
        switch (encoding)
        {
            case BitmapEncoding.BitmapRaw:
                for (ulong w = 0; w < count; w++, at += 8) BinaryPrimitives.WriteUInt64LittleEndian(dest[at..], words[w]);
                break;
            case BitmapEncoding.BitmapSparse:
                ulong prev = 0;
                bool first = true;
                for (ulong w = 0; w < count; w++)
                {
                    if (words[w] == 0) continue;
                    at += WriteVarint(dest[at..], first ? w : w - prev);
                    BinaryPrimitives.WriteUInt64LittleEndian(dest[at..], words[w]);
                    at += 8;
                    prev = w;
                    first = false;
                }
                break;
            case BitmapEncoding.BitmapRuns:
                var walker = new RunWalker(words, count);
                while (walker.Next(out ulong run)) at += WriteVarint(dest[at..], run);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(encoding), encoding, "unknown bitmap encoding");
        }
        return at;
    }

    /// <summary>ORs the decoded bitmap into into[0..count); setBits = bits set in the decoded bitmap. False with a reason on bad input.</summary>
    public static bool TryDecodeOr(ReadOnlySpan<byte> src, BitmapEncoding encoding, ulong* into, ulong count, out ulong setBits, out string? error)
    {
        setBits = 0;
        error = null;
        switch (encoding)
        {
            case BitmapEncoding.BitmapRaw:
                if ((ulong)src.Length != count * 8) { error = $"raw bitmap of {src.Length} bytes, expected {count * 8}"; return false; }
                for (ulong w = 0; w < count; w++)
                {
                    ulong bits = BinaryPrimitives.ReadUInt64LittleEndian(src[(int)(w * 8)..]);
                    setBits += (ulong)BitOperations.PopCount(bits);
                    into[w] |= bits;
                }
                return true;
            case BitmapEncoding.BitmapSparse:
            {
                ulong w = 0;
                bool first = true;
                while (!src.IsEmpty)
                {
                    if (!TryReadVarint(ref src, out ulong delta) || src.Length < 8) { error = "truncated sparse bitmap"; return false; }
                    if (!first && delta == 0) { error = "sparse bitmap repeats a word"; return false; }
                    w = first ? delta : w + delta;
                    first = false;
                    if (w >= count) { error = $"sparse bitmap word {w} is past the end ({count} words)"; return false; }
                    ulong bits = BinaryPrimitives.ReadUInt64LittleEndian(src);
                    src = src[8..];
                    setBits += (ulong)BitOperations.PopCount(bits);
                    into[w] |= bits;
                }
                return true;
            }
            case BitmapEncoding.BitmapRuns:
            {
                ulong bit = 0, total = count * 64;
                bool set = false;
                while (!src.IsEmpty)
                {
                    if (!TryReadVarint(ref src, out ulong run)) { error = "truncated run-length bitmap"; return false; }
                    if (run > total - bit) { error = $"run-length bitmap runs past the end ({total} bits)"; return false; }
                    if (set) { SetRange(into, bit, run); setBits += run; }
                    bit += run;
                    set = !set;
                }
                return true;
            }
            default:
                error = $"unknown bitmap encoding {(int)encoding}";
                return false;
        }
    }

    private static void SetRange(ulong* words, ulong start, ulong length)
    {
        while (length > 0)
        {
            int offset = (int)(start % 64);
            int n = (int)Math.Min(64UL - (ulong)offset, length);
            ulong mask = n == 64 ? ulong.MaxValue : ((1UL << n) - 1) << offset;
            words[start / 64] |= mask;
            start += (ulong)n;
            length -= (ulong)n;
        }
    }

    internal static int VarintSize(ulong v) => v < 0x80 ? 1 : (BitOperations.Log2(v) / 7) + 1;

    private static int WriteVarint(Span<byte> dest, ulong v)
    {
        int i = 0;
        while (v >= 0x80)
        {
            dest[i++] = (byte)(v | 0x80);
            v >>= 7;
        }
        dest[i++] = (byte)v;
        return i;
    }

    private static bool TryReadVarint(ref ReadOnlySpan<byte> src, out ulong value)
    {
        value = 0;
        for (int i = 0; i < 10 && i < src.Length; i++)
        {
            byte b = src[i];
            if (i == 9 && b > 1) return false;
            value |= (ulong)(b & 0x7F) << (7 * i);
            if (b < 0x80)
            {
                src = src[(i + 1)..];
                return true;
            }
        }
        return false;
    }

    /// <summary>Walks the bitmap as alternating clear/set runs, starting with a (possibly empty) clear run; the
    /// trailing clear run is not produced.</summary>
    private struct RunWalker(ulong* words, ulong count)
    {
        private ulong _bit;
        private bool _set;
        private readonly ulong _total = count * 64;

        public bool Next(out ulong run)
        {
            run = 0;
            if (_bit >= _total) return false;
            ulong start = _bit;
            while (_bit < _total)
            {
                ulong word = words[_bit / 64];
                if (!_set) word = ~word;
                word >>= (int)(_bit % 64);          // ones where the run goes on
                int remaining = 64 - (int)(_bit % 64);
                int length = word == ulong.MaxValue >> (64 - remaining) ? remaining : BitOperations.TrailingZeroCount(~word);
                _bit += (ulong)length;
                if (length < remaining) break;
            }
            run = _bit - start;
            if (!_set && _bit >= _total) return false;   // trailing clear run: implied
            _set = !_set;
            return true;
        }
    }
}
