// Page hashing benchmark: every hash kernel the best runnable libplover variant has (scalar, avx2, avx512,
// each forced with PLOVER_HASH_KERNEL on its own copy of the library), against the machine's memory read
// bandwidth for the same access pattern, with 1 thread and with all threads.
//
//   hash_bench --lib DIR/libplover.so --json OUT.json [--quick]
//
// Sets: "l2"     512 KiB of pages hashed over and over (cache-resident);
//       "seq"    1 GiB, every page, in address order;
//       "dirty"  the same 1 GiB with a random 25% of the pages selected by a dirty bitmap.
// GB/s = 1e9 bytes hashed (or read) per wall second; each figure is the median of several runs, and the
// kernels and the read loops take turns run by run so that host noise hits them alike. The "cpu" column is the
// share of its threads' CPU time the process got; runs below 90% are set aside while enough others exist.
// Read bandwidth: a streaming SIMD sum one page at a time ("l2", "seq"), 8 selected pages read as 8
// interleaved streams ("dirty"), on the same pages with the same thread count.
#include <dlfcn.h>
#include <immintrin.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "plover_abi.h"

namespace {

typedef int32_t (*PloverHashKernelFn)(void);
constexpr size_t kPage = 4096;
const char *kKernelNames[] = {"scalar", "avx2", "avx512"};

double Now() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

double CpuNow() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// Wall and CPU time of one timed section: the CPU share (process CPU seconds / (wall * threads)) tells how
// much of the machine the run really had; on a shared host a low share marks a figure as unreliable.
struct Timer {
    double wall0 = Now(), cpu0 = CpuNow();
    double wall() const { return Now() - wall0; }
    double share(int threads) const { return (CpuNow() - cpu0) / ((Now() - wall0) * threads); }
};

double Median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

// ---------------- read bandwidth ----------------
// Each returns a value derived from every byte so the loads cannot be dropped.

__attribute__((target("avx512f"))) uint64_t Lanes512(__m512i v) {
    uint64_t out[8];
    _mm512_storeu_si512(out, v);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

__attribute__((target("avx512f"))) uint64_t SumPages512(uint8_t *const *pages, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = pages[i];
        for (size_t off = 0; off < kPage; off += 128) {
            a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + off));
            a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + off + 64));
        }
    }
    return Lanes512(_mm512_add_epi64(a0, a1));
}

__attribute__((target("avx2"))) uint64_t SumPages256(uint8_t *const *pages, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = pages[i];
        for (size_t off = 0; off < kPage; off += 128) {
            a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + off)));
            a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + off + 32)));
            a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + off + 64)));
            a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + off + 96)));
        }
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, s);
    return out[0] + out[1] + out[2] + out[3];
}

// 8 pages at a time, one 64-byte line of each in turn (8 streams in flight, like the 8-lane kernel).
__attribute__((target("avx512f"))) uint64_t Sum8Interleaved512(uint8_t *const *pages, size_t n) {
    __m512i acc[8];
    for (auto &a : acc) a = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t off = 0; off < kPage; off += 64)
            for (int k = 0; k < 8; k++) acc[k] = _mm512_add_epi64(acc[k], _mm512_load_si512(pages[i + k] + off));
    __m512i s = acc[0];
    for (int k = 1; k < 8; k++) s = _mm512_add_epi64(s, acc[k]);
    return Lanes512(s) + SumPages512(pages + i, n - i);
}

__attribute__((target("avx2"))) uint64_t Sum8Interleaved256(uint8_t *const *pages, size_t n) {
    __m256i acc[8];
    for (auto &a : acc) a = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t off = 0; off < kPage; off += 64)
            for (int k = 0; k < 8; k++) {
                acc[k] = _mm256_add_epi64(acc[k], _mm256_load_si256((const __m256i *)(pages[i + k] + off)));
                acc[k] = _mm256_add_epi64(acc[k], _mm256_load_si256((const __m256i *)(pages[i + k] + off + 32)));
            }
    __m256i s = acc[0];
    for (int k = 1; k < 8; k++) s = _mm256_add_epi64(s, acc[k]);
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, s);
    return out[0] + out[1] + out[2] + out[3] + SumPages256(pages + i, n - i);
}

bool HasAvx512() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

std::atomic<uint64_t> g_sink{0};

// Reads `pages` `reps` times split over `threads` threads (contiguous shares); returns seconds.
double TimeRead(const std::vector<uint8_t *> &pages, int threads, int reps, bool interleaved) {
    static const bool avx512 = HasAvx512();
    auto work = [&](size_t lo, size_t hi) {
        uint64_t s = 0;
        for (int r = 0; r < reps; r++) {
            if (interleaved) s += avx512 ? Sum8Interleaved512(pages.data() + lo, hi - lo) : Sum8Interleaved256(pages.data() + lo, hi - lo);
            else s += avx512 ? SumPages512(pages.data() + lo, hi - lo) : SumPages256(pages.data() + lo, hi - lo);
        }
        g_sink += s;
    };
    std::vector<std::thread> pool;
    size_t n = pages.size();
    double t0 = Now();
    for (int t = 1; t < threads; t++) pool.emplace_back(work, n * t / threads, n * (t + 1) / threads);
    work(0, n / threads);
    for (auto &th : pool) th.join();
    return Now() - t0;
}

// ---------------- the library ----------------

struct Kernel {
    int id;
    PloverHashPagesFn pages;
};

// Loads a private copy of `variant` with PLOVER_HASH_KERNEL=name (read once by the library at first use).
bool LoadKernel(const std::string &variant, int id, const std::string &tmpdir, Kernel &out) {
    std::string copy = tmpdir + "/libplover-" + kKernelNames[id] + ".so";
    std::string cmd = "cp '" + variant + "' '" + copy + "'";
    if (system(cmd.c_str()) != 0) return false;
    setenv("PLOVER_HASH_KERNEL", kKernelNames[id], 1);
    void *h = dlopen(copy.c_str(), RTLD_NOW | RTLD_LOCAL);
    bool ok = false;
    if (h != nullptr) {
        auto kernel = (PloverHashKernelFn)dlsym(h, "plover_hash_kernel");
        out.pages = (PloverHashPagesFn)dlsym(h, "plover_hash_pages");
        out.id = id;
        ok = kernel != nullptr && out.pages != nullptr && kernel() == id;
    } else {
        fprintf(stderr, "dlopen %s: %s\n", copy.c_str(), dlerror());
    }
    unsetenv("PLOVER_HASH_KERNEL");
    unlink(copy.c_str());
    return ok;
}

// Samples of one figure. As in hashing-anchors.md, runs in which the process had less than 90% of its threads'
// CPU time are set aside: the figure is the median of the good runs when there are enough of them (rounds go on
// until every figure has `runs` good runs, at most 3 * runs rounds), else the median of all runs, flagged.
struct Series {
    std::vector<double> all, allShare, good, goodShare;
    void add(double gbps, double share) {
        all.push_back(gbps);
        allShare.push_back(share);
        if (share >= 0.9) { good.push_back(gbps); goodShare.push_back(share); }
    }
    bool trusted(int runs) const { return int(good.size()) >= (runs + 1) / 2; }
    double gbps(int runs) const { return trusted(runs) ? Median(good) : Median(all); }
    double share(int runs) const { return trusted(runs) ? Median(goodShare) : Median(allShare); }
};

bool AllHave(const std::vector<Series> &series, int runs) {
    for (auto &s : series)
        if (int(s.good.size()) < runs) return false;
    return true;
}

struct Row {
    std::string set;
    int threads;
    std::string what;  // kernel name or "read"
    double gbps;
    double read_gbps;
    double cpu_share;  // median CPU share of the runs behind gbps
};

}  // namespace

int main(int argc, char **argv) {
    std::string lib, json;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--lib" && i + 1 < argc) lib = argv[++i];
        else if (a == "--json" && i + 1 < argc) json = argv[++i];
        else if (a == "--quick") quick = true;
        else { fprintf(stderr, "usage: hash_bench --lib DIR/libplover.so --json OUT [--quick]\n"); return 2; }
    }
    if (lib.empty()) { fprintf(stderr, "hash_bench: --lib is required\n"); return 2; }

    char variant[4096];
    int level = plover_pick_variant(lib.c_str(), variant, sizeof variant, 4);
    char tmpdir[] = "/tmp/plover-hash-bench-XXXXXX";
    if (mkdtemp(tmpdir) == nullptr) { perror("mkdtemp"); return 1; }
    std::vector<Kernel> kernels;
    std::string skipped;
    for (int id = 0; id < 3; id++) {
        int need = id == 0 ? 0 : id == 1 ? 3 : 4;
        Kernel k{};
        if (need > level) { skipped += std::string(kKernelNames[id]) + " (needs x86-64-v" + std::to_string(need) + "; cpu/variant level " + std::to_string(level) + ") "; continue; }
        if (LoadKernel(variant, id, tmpdir, k)) kernels.push_back(k);
        else skipped += std::string(kKernelNames[id]) + " (refused by " + variant + ") ";
    }
    rmdir(tmpdir);
    if (kernels.empty()) { fprintf(stderr, "hash_bench: no kernel could be loaded from %s\n", variant); return 1; }

    const int all = int(std::thread::hardware_concurrency());
    const size_t big = quick ? (size_t(256) << 20) : (size_t(1) << 30);
    const size_t bigPages = big / kPage, l2Pages = (512 << 10) / kPage;
    const int runsBig = quick ? 3 : 7, runsL2 = quick ? 3 : 5;
    const double l2RunSeconds = quick ? 0.05 : 0.2;

    // Memory: random pages, transparent huge pages where possible.
    uint8_t *mem = (uint8_t *)mmap(nullptr, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { perror("mmap"); return 1; }
    madvise(mem, big, MADV_HUGEPAGE);
    {
        uint64_t x = 0x9e3779b97f4a7c15ULL;
        uint64_t *w = (uint64_t *)mem;
        for (size_t i = 0; i < big / 8; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; w[i] = x; }
    }
    uint8_t *l2 = (uint8_t *)aligned_alloc(kPage, l2Pages * kPage);
    memcpy(l2, mem, l2Pages * kPage);
    std::vector<uint64_t> bitmap((bigPages + 63) / 64, 0);
    std::vector<uint8_t *> seqPages, dirtyPages, l2PageList;
    uint64_t r = 12345;
    for (size_t i = 0; i < bigPages; i++) {
        seqPages.push_back(mem + i * kPage);
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        if ((r >> 33) % 4 == 0) { bitmap[i / 64] |= 1ULL << (i % 64); dirtyPages.push_back(mem + i * kPage); }
    }
    for (size_t i = 0; i < l2Pages; i++) l2PageList.push_back(l2 + i * kPage);
    std::vector<uint64_t> out(bigPages);
    std::vector<std::vector<uint64_t>> firstOut(3);

    printf("hash bench: cpu level %d (plover_cpu_level), variant %s, %d threads = all, read loops %s\n",
           plover_cpu_level(), variant, all, HasAvx512() ? "AVX-512" : "AVX2");
    printf("kernels: ");
    for (auto &k : kernels) printf("%s ", kKernelNames[k.id]);
    if (!skipped.empty()) printf("| not run: %s", skipped.c_str());
    printf("\n%zu MiB seq, %zu dirty pages (%.1f%%) in the dirty set\n\n", big >> 20, dirtyPages.size(),
           100.0 * double(dirtyPages.size()) / double(bigPages));
    fflush(stdout);

    std::vector<Row> rows;
    bool identical = true;
    // A progress line per measured point (set x threads: every kernel and the read limit), as it is measured.
    auto progress = [&rows](size_t first) {
        const Row &read = rows[first];
        printf("  %-8s %2d thread%s  read %6.1f GB/s", read.set.c_str(), read.threads, read.threads == 1 ? " " : "s", read.gbps);
        for (size_t i = first + 1; i < rows.size(); i++) printf("  %s %.1f", rows[i].what.c_str(), rows[i].gbps);
        printf("\n");
        fflush(stdout);
    };
    for (int threads : {1, all}) {
        if (threads == all && all == 1) break;
        int arg = threads == all ? 0 : threads;  // 0 = all cores, as QEMU-side callers pass it
        // --- cache-resident: repeat calls for at least l2RunSeconds per run ---
        {
            std::vector<Series> series(kernels.size() + 1);  // kernels, then read
            for (int round = 0; round < 3 * runsL2 && !AllHave(series, runsL2); round++) {
                for (size_t k = 0; k < kernels.size(); k++) {
                    kernels[k].pages(l2, l2Pages, nullptr, out.data(), arg);  // warm
                    size_t calls = 0;
                    Timer timer;
                    double t;
                    do {
                        for (int i = 0; i < 16; i++) kernels[k].pages(l2, l2Pages, nullptr, out.data(), arg);
                        calls += 16;
                    } while ((t = timer.wall()) < l2RunSeconds);
                    series[k].add(double(calls * l2Pages * kPage) / t / 1e9, timer.share(threads));
                }
                int reps = 64;
                double t = TimeRead(l2PageList, threads, reps, false);
                reps = std::max(1, int(reps * l2RunSeconds / t));
                Timer timer;
                t = TimeRead(l2PageList, threads, reps, false);
                series.back().add(double(reps * l2Pages * kPage) / t / 1e9, timer.share(threads));
            }
            double read = series.back().gbps(runsL2);
            size_t first = rows.size();
            rows.push_back({"l2", threads, "read", read, read, series.back().share(runsL2)});
            for (size_t k = 0; k < kernels.size(); k++)
                rows.push_back({"l2", threads, kKernelNames[kernels[k].id], series[k].gbps(runsL2), read, series[k].share(runsL2)});
            progress(first);
        }
        // --- 1 GiB in address order, and 25% dirty via the bitmap ---
        for (int dirty = 0; dirty < 2; dirty++) {
            const uint64_t *bm = dirty ? bitmap.data() : nullptr;
            size_t selected = dirty ? dirtyPages.size() : bigPages;
            std::vector<Series> series(kernels.size() + 1);
            for (int round = 0; round < 3 * runsBig && !AllHave(series, runsBig); round++) {
                for (size_t k = 0; k < kernels.size(); k++) {
                    Timer timer;
                    int64_t n = kernels[k].pages(mem, bigPages, bm, out.data(), arg);
                    double t = timer.wall();
                    if (n != int64_t(selected)) { fprintf(stderr, "hash_pages returned %lld, expected %zu\n", (long long)n, selected); return 1; }
                    series[k].add(double(selected * kPage) / t / 1e9, timer.share(threads));
                    if (round == 0) {
                        auto &first = firstOut[dirty];
                        if (first.empty()) first.assign(out.begin(), out.begin() + selected);
                        else if (!std::equal(first.begin(), first.end(), out.begin())) identical = false;
                    }
                }
                Timer timer;
                double t = TimeRead(dirty ? dirtyPages : seqPages, threads, 1, dirty != 0);
                series.back().add(double(selected * kPage) / t / 1e9, timer.share(threads));
            }
            const char *set = dirty ? "dirty25" : "seq";
            double read = series.back().gbps(runsBig);
            size_t first = rows.size();
            rows.push_back({set, threads, "read", read, read, series.back().share(runsBig)});
            for (size_t k = 0; k < kernels.size(); k++)
                rows.push_back({set, threads, kKernelNames[kernels[k].id], series[k].gbps(runsBig), read, series[k].share(runsBig)});
            progress(first);
        }
        firstOut[0].clear();
        firstOut[1].clear();
    }

    printf("\n%-8s %7s  %-14s %8s %8s %6s\n", "set", "threads", "kernel", "GB/s", "of read", "cpu");
    bool starved = false;
    for (auto &row : rows) {
        bool low = row.cpu_share < 0.9;
        starved |= low;
        if (row.what == "read")
            printf("%-8s %7d  %-14s %8.1f %8s %5.0f%%%s\n", row.set.c_str(), row.threads, "read (limit)", row.gbps, "100%",
                   100 * row.cpu_share, low ? " *" : "");
        else
            printf("%-8s %7d  %-14s %8.1f %7.0f%% %5.0f%%%s\n", row.set.c_str(), row.threads, row.what.c_str(), row.gbps,
                   100.0 * row.gbps / row.read_gbps, 100 * row.cpu_share, low ? " *" : "");
    }
    if (starved)
        printf("* fewer than half of the runs got 90%% of their threads' CPU time (shared host): the median of all runs,\n"
               "  compare with care\n");
    printf("\nhashes identical across kernels: %s\n", identical ? "yes" : "NO");

    if (!json.empty()) {
        FILE *f = fopen(json.c_str(), "w");
        if (f == nullptr) { perror(json.c_str()); return 1; }
        fprintf(f, "{\n  \"bench\": \"hash\",\n  \"cpu_level\": %d,\n  \"variant\": \"%s\",\n  \"threads_all\": %d,\n", plover_cpu_level(), variant, all);
        fprintf(f, "  \"read_loops\": \"%s\",\n  \"seq_bytes\": %zu,\n  \"dirty_pages\": %zu,\n  \"identical\": %s,\n",
                HasAvx512() ? "avx512" : "avx2", big, dirtyPages.size(), identical ? "true" : "false");
        fprintf(f, "  \"not_run\": \"%s\",\n  \"unit\": \"GB/s (1e9 bytes hashed or read per wall second, median)\",\n  \"results\": [\n", skipped.c_str());
        for (size_t i = 0; i < rows.size(); i++) {
            auto &row = rows[i];
            fprintf(f, "    {\"set\": \"%s\", \"threads\": %d, \"kernel\": \"%s\", \"gbps\": %.2f, \"read_gbps\": %.2f, \"ratio\": %.3f, \"cpu_share\": %.2f}%s\n",
                    row.set.c_str(), row.threads, row.what.c_str(), row.gbps, row.read_gbps, row.gbps / row.read_gbps, row.cpu_share,
                    i + 1 < rows.size() ? "," : "");
        }
        fprintf(f, "  ]\n}\n");
        fclose(f);
        printf("wrote %s\n", json.c_str());
    }
    return identical ? 0 : 1;
}
