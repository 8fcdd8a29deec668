using Plover.Hashing;
using Xunit;

namespace Plover.Tests.Hashing;

public unsafe class PageHasherTests
{
    /// <summary>(pages, bitmap) scenarios: null bitmap, empty, 1/7/8/9/63/64/65 and random dirty pages,
    /// unaligned page counts, set bits past the last page (ignored).</summary>
    public static readonly string[] Scenarios =
    [
        "all:1", "all:7", "all:9", "all:64", "all:65", "all:130", "all:1027",
        "none:300", "first:300", "last:300",
        "count1:1000", "count7:1000", "count8:1000", "count9:1000", "count63:1000", "count64:1000", "count65:1000",
        "random25:1027", "random50:777", "random90:130", "allbits:1027", "tailbits:70",
    ];

    public static TheoryData<int, string> Cases()
    {
        var data = new TheoryData<int, string>();
        foreach (int threads in new[] { 1, 2, 3 })
            foreach (string scenario in Scenarios)
                data.Add(threads, scenario);
        return data;
    }

    [KernelTheory(HashKernel.Scalar)]
    [MemberData(nameof(Cases))]
    public void Scalar_kernel_equals_CityHash64_of_each_selected_page(int threads, string scenario) =>
        Check(HashKernel.Scalar, threads, scenario);

    [KernelTheory(HashKernel.Avx2)]
    [MemberData(nameof(Cases))]
    public void Avx2_kernel_equals_CityHash64_of_each_selected_page(int threads, string scenario) =>
        Check(HashKernel.Avx2, threads, scenario);

    [KernelTheory(HashKernel.Avx512)]
    [MemberData(nameof(Cases))]
    public void Avx512_kernel_equals_CityHash64_of_each_selected_page(int threads, string scenario) =>
        Check(HashKernel.Avx512, threads, scenario);

    private static void Check(HashKernel kernel, int threads, string scenario)
    {
        string[] parts = scenario.Split(':');
        int pageCount = int.Parse(parts[1]);
        using var pages = new PageSet(pageCount, seed: pageCount * 31 + threads, misalign: threads == 3 ? 8 : 0);
        ulong[]? bitmap = MakeBitmap(parts[0], pageCount, new Random(pageCount + parts[0].Length));
        var expected = Selected(pages.Expected, bitmap);

        using var hasher = new PageHasher(threads, kernel);
        foreach (var prefetch in new[] { HashPrefetch.Never, HashPrefetch.Always })
        {
            hasher.Prefetch = prefetch;
            var actual = Hash(hasher, pages, bitmap);
            Assert.Equal(expected, actual);
        }
    }

    [Fact]
    public void Known_pages_hash_to_the_reference_answers_with_every_kernel()
    {
        using var pages = new PageSet(3, seed: 1);
        new Span<byte>(pages.Base, 4096).Clear();
        new Span<byte>(pages.Base + 4096, 4096).Fill(0xff);
        CityHashTests.Pattern(4096).CopyTo(new Span<byte>(pages.Base + 8192, 4096));
        foreach (var kernel in SupportedKernels())
        {
            using var hasher = new PageHasher(1, kernel);
            var hashes = Hash(hasher, pages, null);
            Assert.Equal([0x06c5df0488653d58UL, 0x2b5e63a363df7394UL, 0x8fc9c0fa8db60258UL], hashes);
        }
    }

    [Fact]
    public void All_kernels_agree_with_each_other_and_the_plain_reference_on_random_pages()
    {
        using var pages = new PageSet(1500, seed: 99, misalign: 1);
        var reference = new ulong[pages.PageCount];
        for (int p = 0; p < pages.PageCount; p += 7)
            Assert.Equal(CityHashReference.Hash64(pages.Page(p).ToArray(), 0, 4096), pages.Expected[p]);
        foreach (var kernel in SupportedKernels())
        {
            using var hasher = new PageHasher(2, kernel) { Prefetch = HashPrefetch.Always };
            Assert.Equal(pages.Expected, Hash(hasher, pages, null));
        }
    }

    [Fact]
    public void Default_kernel_is_the_best_the_cpu_supports_and_threads_zero_means_all_cores()
    {
        using var hasher = new PageHasher();
        Assert.Equal(HashKernels.Best, hasher.Kernel);
        Assert.Equal(Environment.ProcessorCount, hasher.Threads);
        Assert.True(HashKernels.IsSupported(HashKernel.Scalar));
    }

    [Fact]
    public void A_reused_hasher_stays_correct_across_many_calls_of_varying_size()
    {
        using var pages = new PageSet(600, seed: 5);
        using var hasher = new PageHasher(3);
        var rng = new Random(17);
        for (int call = 0; call < 300; call++)
        {
            int count = rng.Next(0, 600);
            ulong[]? bitmap = rng.Next(3) == 0 ? null : MakeBitmap("random" + rng.Next(1, 100), count, rng);
            var expected = Selected(pages.Expected.AsSpan(0, count).ToArray(), bitmap);
            var actual = new ulong[expected.Length + 1];
            long written;
            fixed (ulong* bits = bitmap)
            fixed (ulong* output = actual)
                written = hasher.HashPages(pages.Base, (ulong)count, bitmap == null ? null : bits, output);
            Assert.Equal(expected.Length, written);
            Assert.Equal(expected, actual.AsSpan(0, expected.Length).ToArray());
            Assert.Equal(0UL, actual[^1]); // nothing written past the selected count
        }
    }

    [Fact]
    public void Concurrent_callers_on_one_hasher_are_serialised_and_correct()
    {
        using var pages = new PageSet(400, seed: 8);
        using var hasher = new PageHasher(2);
        var failures = 0;
        Parallel.For(0, 4, _ =>
        {
            for (int i = 0; i < 20; i++)
            {
                if (!Hash(hasher, pages, null).AsSpan().SequenceEqual(pages.Expected))
                    Interlocked.Increment(ref failures);
            }
        });
        Assert.Equal(0, failures);
    }

    [Fact]
    public void Hashing_does_not_allocate_per_call()
    {
        using var pages = new PageSet(256, seed: 3);
        var bitmap = MakeBitmap("random50", 256, new Random(3))!;
        var output = new ulong[256];
        foreach (int threads in new[] { 1, 2 })
        {
            using var hasher = new PageHasher(threads);
            fixed (ulong* bits = bitmap)
            fixed (ulong* outPtr = output)
            {
                hasher.HashPages(pages.Base, 256, bits, outPtr); // warm up (JIT, first-use growth)
                // The fewest bytes of three rounds: a one-time lazy allocation (the runtime's wait object for a first
                // contended lock, seen once in a loaded full run) shows in one round, an allocation per call in all.
                long fewest = long.MaxValue;
                for (int round = 0; round < 3; round++)
                {
                    long before = GC.GetAllocatedBytesForCurrentThread();
                    for (int i = 0; i < 50; i++)
                    {
                        hasher.HashPages(pages.Base, 256, bits, outPtr);
                        hasher.HashPages(pages.Base, 256, null, outPtr);
                    }
                    fewest = Math.Min(fewest, GC.GetAllocatedBytesForCurrentThread() - before);
                }
                Assert.Equal(0, fewest);
            }
        }
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageHasher(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageHasher(PageHasher.MaxThreads + 1));
        Assert.Throws<NotSupportedException>(() => new PageHasher(1, (HashKernel)7));
        using var hasher = new PageHasher(1);
        Assert.Throws<ArgumentNullException>(() => HashOne(hasher, null));
        using var pages = new PageSet(1, seed: 2);
        Assert.Throws<ArgumentNullException>(() => hasher.HashPages(pages.Base, 1, null, null));
        Assert.Equal(0, hasher.HashPages(null, 0, null, null)); // nothing to do is not an error
        Assert.Throws<NotSupportedException>(() => hasher.Kernel = (HashKernel)7);
    }

    [Fact]
    public void A_disposed_hasher_refuses_calls()
    {
        var hasher = new PageHasher(3);
        hasher.Dispose();
        hasher.Dispose();
        using var pages = new PageSet(1, seed: 2);
        Assert.Throws<ObjectDisposedException>(() => HashOne(hasher, pages.Base));
    }

    [Fact]
    public void Kernel_names_parse()
    {
        Assert.True(HashKernels.TryParse("AVX512", out var k) && k == HashKernel.Avx512);
        Assert.True(HashKernels.TryParse("avx2", out k) && k == HashKernel.Avx2);
        Assert.True(HashKernels.TryParse(" scalar ", out k) && k == HashKernel.Scalar);
        Assert.False(HashKernels.TryParse("sse", out _));
        Assert.False(HashKernels.TryParse(null, out _));
    }

    [Fact]
    public void Environment_kernel_requests_resolve_to_runnable_kernels_or_a_clear_refusal()
    {
        Assert.True(HashKernels.TryResolve(null, out var k, out var error) && k == HashKernels.Best && error == null);
        Assert.True(HashKernels.TryResolve("", out k, out _) && k == HashKernels.Best);
        foreach (var kernel in Enum.GetValues<HashKernel>())
        {
            bool ok = HashKernels.TryResolve(HashKernels.Name(kernel), out k, out error);
            Assert.Equal(HashKernels.IsSupported(kernel), ok);
            if (ok) Assert.Equal(kernel, k);
            else Assert.Contains("cannot run", error);
        }
        Assert.False(HashKernels.TryResolve("neon", out _, out error));
        Assert.Contains("not a hash kernel", error);
    }

    private static long HashOne(PageHasher hasher, byte* page)
    {
        ulong hash;
        return hasher.HashPages(page, 1, null, &hash);
    }

    internal static IEnumerable<HashKernel> SupportedKernels() =>
        Enum.GetValues<HashKernel>().Where(HashKernels.IsSupported);

    private static ulong[] Hash(PageHasher hasher, PageSet pages, ulong[]? bitmap)
    {
        var output = new ulong[pages.PageCount];
        long written;
        fixed (ulong* bits = bitmap)
        fixed (ulong* outPtr = output)
            written = hasher.HashPages(pages.Base, (ulong)pages.PageCount, bitmap == null ? null : bits, outPtr);
        return output.AsSpan(0, (int)written).ToArray();
    }

    private static ulong[] Selected(ulong[] all, ulong[]? bitmap)
    {
        if (bitmap == null)
            return all;
        var list = new List<ulong>();
        for (int p = 0; p < all.Length; p++)
            if ((bitmap[p / 64] >> (p % 64) & 1) != 0)
                list.Add(all[p]);
        return list.ToArray();
    }

    /// <summary>A bitmap for pageCount pages (ceil(pageCount/64) words), or null for "all".</summary>
    private static ulong[]? MakeBitmap(string kind, int pageCount, Random rng)
    {
        if (kind == "all")
            return null;
        var bitmap = new ulong[(pageCount + 63) / 64];
        void Set(int p) => bitmap[p / 64] |= 1UL << (p % 64);
        if (kind == "first") Set(0);
        else if (kind == "last") Set(pageCount - 1);
        else if (kind == "allbits") Array.Fill(bitmap, ulong.MaxValue);
        else if (kind == "tailbits")
        {
            // Every bit of every word set, including those past the last page: only real pages count.
            Array.Fill(bitmap, ulong.MaxValue);
        }
        else if (kind.StartsWith("count"))
        {
            int n = int.Parse(kind["count".Length..]);
            foreach (int p in Enumerable.Range(0, pageCount).OrderBy(_ => rng.Next()).Take(n))
                Set(p);
        }
        else if (kind.StartsWith("random"))
        {
            int percent = int.Parse(kind["random".Length..]);
            for (int p = 0; p < pageCount; p++)
                if (rng.Next(100) < percent) Set(p);
        }
        // "none": no bits set
        return bitmap;
    }
}
