// Native tests of the page hashing exports of every published ISA variant of libplover.so:
//   plover_cityhash64, plover_hash_pages, plover_hash_kernel (int32_t plover_hash_kernel(void): 0 scalar,
//   1 avx2, 2 avx512, or a negative errno when PLOVER_HASH_KERNEL names a kernel the CPU/build refuses).
// PLOVER_LIB names libplover.so (the x86-64-v2 build); its siblings libplover.x86-64-v3.so and
// libplover.x86-64-v4.so are the AVX2 and AVX-512 builds. A variant that is absent, or that this CPU cannot
// run (plover_cpu_level), is skipped with the reason.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "plover_abi.h"

namespace {

typedef int32_t (*PloverHashKernelFn)(void);

constexpr size_t kPage = 4096;

// ---- an independent CityHash64 v1.1.1, written for this test from city.cc ----
namespace ref {
constexpr uint64_t k0 = 0xc3a5c85c97cb3127ULL, k1 = 0xb492b66fbe98f273ULL, k2 = 0x9ae16a3b2f90404fULL;
uint64_t F64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
uint64_t F32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
uint64_t Ror(uint64_t v, int s) { return s == 0 ? v : (v >> s) | (v << (64 - s)); }
uint64_t Mix(uint64_t v) { return v ^ (v >> 47); }
uint64_t H16(uint64_t u, uint64_t v, uint64_t mul = 0x9ddfea08eb382d69ULL) {
    uint64_t a = (u ^ v) * mul; a ^= a >> 47;
    uint64_t b = (v ^ a) * mul; b ^= b >> 47;
    return b * mul;
}
void Weak(const uint8_t *s, uint64_t a, uint64_t b, uint64_t &first, uint64_t &second) {
    uint64_t w = F64(s), x = F64(s + 8), y = F64(s + 16), z = F64(s + 24);
    a += w; b = Ror(b + a + z, 21); uint64_t c = a; a += x; a += y; b += Ror(a, 44);
    first = a + z; second = b + c;
}
uint64_t City64(const uint8_t *s, size_t len) {
    if (len <= 16) {
        if (len >= 8) {
            uint64_t mul = k2 + len * 2, a = F64(s) + k2, b = F64(s + len - 8);
            uint64_t c = Ror(b, 37) * mul + a, d = (Ror(a, 25) + b) * mul;
            return H16(c, d, mul);
        }
        if (len >= 4) { uint64_t mul = k2 + len * 2; return H16(len + (F32(s) << 3), F32(s + len - 4), mul); }
        if (len > 0) {
            uint32_t y = uint32_t(s[0]) + (uint32_t(s[len >> 1]) << 8), z = uint32_t(len) + (uint32_t(s[len - 1]) << 2);
            return Mix(y * k2 ^ z * k0) * k2;
        }
        return k2;
    }
    if (len <= 32) {
        uint64_t mul = k2 + len * 2, a = F64(s) * k1, b = F64(s + 8), c = F64(s + len - 8) * mul, d = F64(s + len - 16) * k2;
        return H16(Ror(a + b, 43) + Ror(c, 30) + d, a + Ror(b + k2, 18) + c, mul);
    }
    if (len <= 64) {
        uint64_t mul = k2 + len * 2, a = F64(s) * k2, b = F64(s + 8), c = F64(s + len - 24), d = F64(s + len - 32);
        uint64_t e = F64(s + 16) * k2, f = F64(s + 24) * 9, g = F64(s + len - 8), h = F64(s + len - 16) * mul;
        uint64_t u = Ror(a + g, 43) + (Ror(b, 30) + c) * 9, v = ((a + g) ^ d) + f + 1;
        uint64_t w = __builtin_bswap64((u + v) * mul) + h, x = Ror(e + f, 42) + c;
        uint64_t y = (__builtin_bswap64((v + w) * mul) + g) * mul, z = e + f + c;
        a = __builtin_bswap64((x + z) * mul + y) + b;
        b = Mix((z + a) * mul + d + h) * mul;
        return b + x;
    }
    uint64_t x = F64(s + len - 40), y = F64(s + len - 16) + F64(s + len - 56);
    uint64_t z = H16(F64(s + len - 48) + len, F64(s + len - 24));
    uint64_t v1, v2, w1, w2;
    Weak(s + len - 64, len, z, v1, v2);
    Weak(s + len - 32, y + k1, x, w1, w2);
    x = x * k1 + F64(s);
    len = (len - 1) & ~size_t(63);
    do {
        x = Ror(x + y + v1 + F64(s + 8), 37) * k1;
        y = Ror(y + v2 + F64(s + 48), 42) * k1;
        x ^= w2;
        y += v1 + F64(s + 40);
        z = Ror(z + w1, 33) * k1;
        uint64_t nv1, nv2;
        Weak(s, v2 * k1, x + w1, nv1, nv2);
        Weak(s + 32, z + w2, y + F64(s + 16), w1, w2);
        v1 = nv1; v2 = nv2;
        std::swap(z, x);
        s += 64; len -= 64;
    } while (len != 0);
    return H16(H16(v1, w1) + Mix(y) * k1 + z, H16(v2, w2) + x);
}
}  // namespace ref

struct Variant {
    int level = 0;          // 0 (x86-64-v2), 3 or 4
    std::string path;
    std::string skip;       // non-empty: why this variant cannot be tested here
    void *handle = nullptr;
    PloverCityHash64Fn city = nullptr;
    PloverHashPagesFn pages = nullptr;
    PloverHashKernelFn kernel = nullptr;
};

std::string VariantPath(const std::string &lib, int level) {
    if (level == 0) return lib;
    if (lib.size() < 3 || lib.compare(lib.size() - 3, 3, ".so") != 0) return "";
    return lib.substr(0, lib.size() - 3) + ".x86-64-v" + std::to_string(level) + ".so";
}

// dlopens one library file and looks up the hash exports; on failure sets v.skip.
void Open(Variant &v, const std::string &file) {
    v.handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (v.handle == nullptr) { v.skip = std::string("dlopen failed: ") + dlerror(); return; }
    v.city = (PloverCityHash64Fn)dlsym(v.handle, "plover_cityhash64");
    v.pages = (PloverHashPagesFn)dlsym(v.handle, "plover_hash_pages");
    v.kernel = (PloverHashKernelFn)dlsym(v.handle, "plover_hash_kernel");
    if (v.city == nullptr || v.pages == nullptr || v.kernel == nullptr) v.skip = "missing hash exports in " + file;
}

// Loads each variant once per process (a NativeAOT library cannot be unloaded).
Variant &Load(int level) {
    static std::map<int, Variant> loaded;
    auto it = loaded.find(level);
    if (it != loaded.end()) return it->second;
    Variant &v = loaded[level];
    v.level = level;
    const char *lib = getenv("PLOVER_LIB");
    if (lib == nullptr || *lib == 0) { v.skip = "PLOVER_LIB is not set"; return v; }
    v.path = VariantPath(lib, level);
    if (v.path.empty() || access(v.path.c_str(), R_OK) != 0) { v.skip = "variant not published: " + v.path; return v; }
    if (plover_cpu_level() < level) {
        v.skip = "this CPU cannot run " + v.path + " (cpu level " + std::to_string(plover_cpu_level()) + ")";
        return v;
    }
    Open(v, v.path);
    return v;
}

std::vector<uint8_t> Pattern(size_t n) {
    std::vector<uint8_t> b(n);
    for (size_t i = 0; i < n; i++) b[i] = uint8_t((i * 7 + 3) & 0xff);
    return b;
}

// Page-aligned random pages with a zero page and an all-0xff page among them.
struct Pages {
    explicit Pages(size_t count, uint32_t seed) : count(count) {
        base = static_cast<uint8_t *>(aligned_alloc(kPage, count * kPage));
        std::mt19937_64 rng(seed);
        for (size_t i = 0; i < count * kPage / 8; i++) {
            uint64_t r = rng();
            memcpy(base + i * 8, &r, 8);
        }
        if (count > 2) { memset(base, 0, kPage); memset(base + kPage, 0xff, kPage); }
    }
    ~Pages() { free(base); }
    uint8_t *page(size_t i) const { return base + i * kPage; }
    size_t count;
    uint8_t *base;
};

class HashVariant : public ::testing::TestWithParam<int> {
protected:
    void SetUp() override {
        v = &Load(GetParam());
        if (!v->skip.empty()) GTEST_SKIP() << v->skip;
    }
    Variant *v = nullptr;
};

std::string LevelName(const ::testing::TestParamInfo<int> &info) {
    return info.param == 0 ? "v2" : "v" + std::to_string(info.param);
}

TEST_P(HashVariant, CityHash64KnownAnswers) {
    const std::pair<size_t, uint64_t> answers[] = {
        {0, 0x9ae16a3b2f90404fULL}, {1, 0xbec09cc447469d8bULL}, {3, 0x40b4412e33eefd64ULL},
        {4, 0xf3c7ee05197a7b92ULL}, {8, 0x0c97ecbc1e9d2626ULL}, {16, 0x7eda0ed8c837a168ULL},
        {17, 0xc9518fe63ebf6127ULL}, {32, 0xa53f806f23a314e8ULL}, {33, 0x0d861240f8a6c64bULL},
        {64, 0x1ccefea99389ae75ULL}, {65, 0xacf6a69f1f078342ULL}, {128, 0x899e1a09acbba491ULL},
        {4095, 0xb9fdac4231fd982bULL}, {4096, 0x8fc9c0fa8db60258ULL}, {4097, 0x672d87853b4d5862ULL},
    };
    auto pattern = Pattern(4097);
    for (auto &[len, hash] : answers) {
        EXPECT_EQ(hash, v->city(pattern.data(), len)) << "length " << len;
        EXPECT_EQ(hash, ref::City64(pattern.data(), len)) << "test reference, length " << len;
    }
    std::vector<uint8_t> page(kPage, 0);
    EXPECT_EQ(0x06c5df0488653d58ULL, v->city(page.data(), kPage));
    memset(page.data(), 0xff, kPage);
    EXPECT_EQ(0x2b5e63a363df7394ULL, v->city(page.data(), kPage));
}

TEST_P(HashVariant, CityHash64RandomLengthsAndOffsetsMatchTheReference) {
    std::mt19937 rng(42);
    std::vector<uint8_t> buf(20000);
    for (auto &b : buf) b = uint8_t(rng());
    for (int trial = 0; trial < 3000; trial++) {
        size_t len = trial < 300 ? size_t(trial) : rng() % 9000;
        size_t off = rng() % (buf.size() - len);
        ASSERT_EQ(ref::City64(buf.data() + off, len), v->city(buf.data() + off, len)) << "len " << len << " off " << off;
    }
}

TEST_P(HashVariant, HashPagesWithoutBitmapHashesEveryPage) {
    Pages pages(301, 7);
    for (int threads : {0, 1, 2, 3}) {
        std::vector<uint64_t> out(pages.count + 1, 0);
        ASSERT_EQ(int64_t(pages.count), v->pages(pages.base, pages.count, nullptr, out.data(), threads)) << threads;
        for (size_t i = 0; i < pages.count; i++)
            ASSERT_EQ(ref::City64(pages.page(i), kPage), out[i]) << "page " << i << " threads " << threads;
        EXPECT_EQ(0u, out[pages.count]) << "wrote past the last page";
    }
}

TEST_P(HashVariant, HashPagesWithBitmapHashesSelectedPagesInOrder) {
    Pages pages(1000, 9);
    std::mt19937 rng(3);
    for (int percent : {0, 1, 25, 50, 100}) {
        std::vector<uint64_t> bitmap((pages.count + 63) / 64, 0);
        std::vector<uint64_t> expected;
        for (size_t i = 0; i < pages.count; i++) {
            if (int(rng() % 100) < percent) {
                bitmap[i / 64] |= 1ULL << (i % 64);
                expected.push_back(ref::City64(pages.page(i), kPage));
            }
        }
        bitmap.back() |= ~0ULL << (pages.count % 64);  // bits past the last page must be ignored
        for (int threads : {1, 2, 3}) {
            std::vector<uint64_t> out(pages.count + 1, 0);
            ASSERT_EQ(int64_t(expected.size()), v->pages(pages.base, pages.count, bitmap.data(), out.data(), threads));
            out.resize(expected.size());
            EXPECT_EQ(expected, out) << percent << "% dirty, " << threads << " threads";
        }
    }
}

TEST_P(HashVariant, BadArgumentsReturnNegativeErrno) {
    Pages pages(4, 1);
    uint64_t out[4];
    EXPECT_EQ(-EINVAL, v->pages(nullptr, 4, nullptr, out, 1)) << "null base with pages";
    EXPECT_EQ(-EINVAL, v->pages(pages.base, 4, nullptr, nullptr, 1)) << "null hashes_out";
    EXPECT_EQ(-EINVAL, v->pages(pages.base, 4, nullptr, out, -1)) << "negative threads";
    EXPECT_EQ(-EINVAL, v->pages(pages.base, 4, nullptr, out, 1 << 20)) << "absurd thread count";
    EXPECT_EQ(-EINVAL, v->pages(pages.base, ~0ULL, nullptr, out, 1)) << "page count overflows";
    EXPECT_EQ(0, v->pages(nullptr, 0, nullptr, out, 1)) << "no pages is not an error";
    EXPECT_EQ(4, v->pages(pages.base, 4, nullptr, out, 1)) << "still usable after refusals";
}

TEST_P(HashVariant, ReportsTheBestKernelOfItsBuild) {
    if (getenv("PLOVER_HASH_KERNEL") != nullptr) GTEST_SKIP() << "PLOVER_HASH_KERNEL is set in this environment";
    int expected = v->level == 4 ? 2 : v->level == 3 ? 1 : 0;
    EXPECT_EQ(expected, v->kernel());
}

// Runs fn in a child process against a fresh copy of the variant, loaded after PLOVER_HASH_KERNEL=value is
// set (the exports read it once; a copy under another name is a new library instance, not the parent's).
// Returns the child's exit code.
int InChild(const Variant &variant, const char *value, int (*fn)(Variant &)) {
    pid_t pid = fork();
    if (pid == 0) {
        setenv("PLOVER_HASH_KERNEL", value, 1);
        std::string copy = "/tmp/plover-hash-test-" + std::to_string(getpid()) + ".so";
        std::string cmd = "cp '" + variant.path + "' '" + copy + "'";
        if (system(cmd.c_str()) != 0) _exit(95);
        Variant v;
        v.level = variant.level;
        Open(v, copy);
        unlink(copy.c_str());
        _exit(v.skip.empty() ? fn(v) : 99);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

TEST_P(HashVariant, EnvironmentForcesEachKernelTheBuildCanRunAndRefusesOthers) {
    Pages pages(17, 5);
    static Pages *shared = nullptr;
    shared = &pages;
    const int best = v->level == 4 ? 2 : v->level == 3 ? 1 : 0;
    const char *names[] = {"scalar", "avx2", "avx512"};
    for (int k = 0; k < 3; k++) {
        int code = InChild(*v, names[k], [](Variant &lib) -> int {
            int kernel = lib.kernel();
            if (kernel < 0) {
                uint64_t out[17];
                return lib.pages(shared->base, shared->count, nullptr, out, 1) == kernel ? 50 + (-kernel == ENOTSUP) : 98;
            }
            uint64_t out[17];
            if (lib.pages(shared->base, shared->count, nullptr, out, 2) != 17) return 97;
            for (size_t i = 0; i < 17; i++)
                if (out[i] != ref::City64(shared->page(i), kPage)) return 96;
            return 10 + kernel;
        });
        if (k <= best)
            EXPECT_EQ(10 + k, code) << names[k] << " should be forced and correct";
        else
            EXPECT_EQ(51, code) << names[k] << " should be refused with -ENOTSUP";
    }
    int code = InChild(*v, "sse9", [](Variant &lib) -> int { return lib.kernel() == -EINVAL ? 0 : 1; });
    EXPECT_EQ(0, code) << "an unknown kernel name is refused with -EINVAL";
}

INSTANTIATE_TEST_SUITE_P(Variants, HashVariant, ::testing::Values(0, 3, 4), LevelName);

TEST(HashVariants, AllRunnableVariantsAgree) {
    std::vector<Variant *> runnable;
    std::string reasons;
    for (int level : {0, 3, 4}) {
        Variant &v = Load(level);
        if (v.skip.empty()) runnable.push_back(&v);
        else reasons += v.skip + "; ";
    }
    if (runnable.size() < 2) GTEST_SKIP() << "fewer than two runnable variants: " << reasons;
    Pages pages(517, 11);
    std::vector<uint64_t> bitmap((pages.count + 63) / 64);
    std::mt19937_64 rng(8);
    for (auto &w : bitmap) w = rng() & rng();
    std::vector<uint64_t> first_all, first_dirty;
    for (Variant *v : runnable) {
        std::vector<uint64_t> all(pages.count), dirty(pages.count);
        ASSERT_EQ(int64_t(pages.count), v->pages(pages.base, pages.count, nullptr, all.data(), 0));
        int64_t n = v->pages(pages.base, pages.count, bitmap.data(), dirty.data(), 0);
        ASSERT_GT(n, 0);
        dirty.resize(size_t(n));
        if (first_all.empty()) { first_all = all; first_dirty = dirty; continue; }
        EXPECT_EQ(first_all, all) << v->path;
        EXPECT_EQ(first_dirty, dirty) << v->path;
    }
    if (!reasons.empty()) std::cout << "[   NOTE   ] not compared: " << reasons << "\n";
}

}  // namespace
