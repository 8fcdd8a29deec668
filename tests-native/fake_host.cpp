#include "fake_host.h"
#include "test_keys.h"

#include <dlfcn.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

// ---------------------------------------------------------------- the library

const PloverLib &Lib() {
    static PloverLib lib = [] {
        PloverLib l;
        const char *path = getenv("PLOVER_LIB");
        if (path == nullptr || *path == 0) {
            l.error = "PLOVER_LIB is not set (build.sh sets it to .../libplover.so)";
            return l;
        }
        l.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (l.handle == nullptr) {
            l.error = std::string("dlopen failed: ") + dlerror();
            return l;
        }
        l.abi_version = (PloverAbiVersionFn)dlsym(l.handle, PLOVER_SYM_ABI_VERSION);
        l.init = (PloverInitFn)dlsym(l.handle, PLOVER_SYM_INIT);
        l.abi_layout = (PloverAbiLayoutFn)dlsym(l.handle, "plover_abi_layout");
        if (l.abi_version == nullptr || l.init == nullptr || l.abi_layout == nullptr)
            l.error = std::string("missing exports in ") + path;
        return l;
    }();
    return lib;
}

bool RequireLib() {
    if (!Lib().error.empty()) {
        ADD_FAILURE() << Lib().error;
        return false;
    }
    return true;
}

// ---------------------------------------------------------------- host callbacks (C ABI)

namespace {

FakeHost &H() { return FakeHost::Get(); }

void FakeLog(int32_t level, const char *msg) { H().Log(level, msg); }
int32_t FakeSchedule(PloverMainFn fn, void *opaque) { return H().Schedule(fn, opaque); }
// QEMU's fence ends the process; the fake records the reason and parks the calling thread for good (the
// contract is only that fence never returns), so a test can check why.
void FakeFence(const char *why) {
    fprintf(stderr, "fake host: fence: %s\n", why);
    {
        std::lock_guard<std::mutex> lock(H().fence_mu);
        H().fenced = why ? why : "";
    }
    for (;;) pause();
}
const char *FakeAccel(void) { H().CheckMain("accel_name"); return "fake"; }
int32_t FakeIsRunning(void) { H().CheckMain("vm_is_running"); return H().running ? 1 : 0; }
int32_t FakeStop(void) {
    H().CheckMain("vm_stop");
    H().stops++;
    if (H().running) H().SetRunning(false);
    return 0;
}
int32_t FakeStart(void) {
    H().CheckMain("vm_start");
    H().starts++;
    if (!H().running) H().SetRunning(true);
    return 0;
}
int32_t FakeDirtyLogStart(void) {
    H().CheckMain("dirty_log_start");
    H().logging = true;
    for (auto &b : H().blocks) std::fill(b.log.begin(), b.log.end(), 0);  // discards the dirt so far
    return 0;
}
void FakeDirtyLogStop(void) { H().CheckMain("dirty_log_stop"); H().logging = false; }
int64_t FakeDirtySync(void) {
    H().CheckMain("dirty_sync");
    H().dirty_syncs++;
    if (H().running) H().dirty_syncs_running++;
    int64_t bits = 0;
    for (auto &b : H().blocks)
        for (size_t w = 0; w < b.log.size(); w++) {
            bits += __builtin_popcountll(b.log[w]);
            b.dirty[w] |= b.log[w];
            b.log[w] = 0;
        }
    return bits;
}
void FakeDirtyClear(void) {
    H().CheckMain("dirty_clear");
    for (auto &b : H().blocks) std::fill(b.dirty.begin(), b.dirty.end(), 0);
}
void FakeDirtyMarkAll(void) {
    H().CheckMain("dirty_mark_all");
    for (auto &b : H().blocks) {
        std::fill(b.dirty.begin(), b.dirty.end(), ~0ULL);
        if (b.pages() % 64) b.dirty.back() = (1ULL << (b.pages() % 64)) - 1;
    }
}
void FakeRamUpdated(uint32_t block, uint64_t offset, uint64_t len) {
    H().CheckMain("ram_updated");
    H().ram_updates.push_back({block, {offset, len}});
}
int32_t FakeSave(uint8_t **buf, size_t *len) {
    H().CheckMain("save_device_state");
    H().saves++;
    *len = H().device_state.size();
    *buf = (uint8_t *)malloc(*len);
    memcpy(*buf, H().device_state.data(), *len);
    return 0;
}
int32_t FakeLoad(const uint8_t *buf, size_t len) {
    H().CheckMain("load_device_state");
    if (H().running || len != H().device_state.size() || memcmp(buf, H().device_state.data(), len) != 0) {
        H().bad_loads++;
        return -EINVAL;
    }
    H().loads++;
    return 0;
}
void FakeFree(void *buf) {
    H().CheckMain("free_buf");
    H().frees++;
    free(buf);
}
int32_t FakeInject(uint32_t nic, uint32_t, const uint8_t *pkt, size_t len) {
    H().CheckMain("net_inject");
    if (nic >= H().nics.size()) return -EINVAL;
    H().nics[nic].injected.emplace_back(pkt, pkt + len);
    return 0;
}
uint64_t FakeOutCut(uint32_t nic) {
    H().CheckMain("net_out_cut");
    if (nic >= H().nics.size()) return 0;
    return H().nics[nic].open_epoch++;
}
int64_t FakeOutRelease(uint32_t nic, uint64_t upto) {
    H().CheckMain("net_out_release");
    if (nic >= H().nics.size()) return -EINVAL;
    auto &n = H().nics[nic];
    int64_t count = 0;
    for (auto it = n.held.begin(); it != n.held.end() && it->first <= upto;) {
        for (auto &f : it->second) n.sent.push_back(f);
        count += int64_t(it->second.size());
        it = n.held.erase(it);
    }
    return count;
}
int64_t FakeOutDiscard(uint32_t nic, uint64_t upto) {
    H().CheckMain("net_out_discard");
    if (nic >= H().nics.size()) return -EINVAL;
    auto &n = H().nics[nic];
    int64_t count = 0;
    for (auto it = n.held.begin(); it != n.held.end() && it->first <= upto;) {
        count += int64_t(it->second.size());
        it = n.held.erase(it);
    }
    n.discarded += uint64_t(count);
    return count;
}
int32_t FakeOutMode(uint32_t nic, int32_t mode) {
    H().CheckMain("net_out_mode");
    if (nic >= H().nics.size() || (mode != PLOVER_OUT_HOLD && mode != PLOVER_OUT_PASS)) return -EINVAL;
    H().nics[nic].mode = mode;
    return 0;
}
int32_t FakeAnnounce(void) { H().CheckMain("net_announce"); H().announces++; return 0; }
int32_t FakeVcpus(int32_t *tids, uint32_t max, uint32_t *count) {
    H().CheckMain("vcpu_thread_ids");
    const int32_t ids[] = {4242, 4243};
    *count = 2;
    for (uint32_t i = 0; i < 2 && i < max; i++) tids[i] = ids[i];
    return 0;
}

}  // namespace

int32_t FakeRamBlocks(const PloverRamBlock **out, uint32_t *count) {
    H().CheckMain("ram_blocks");
    auto &t = H().block_table_;
    t.clear();
    for (size_t i = 0; i < H().blocks.size(); i++) {
        auto &b = H().blocks[i];
        t.push_back(PloverRamBlock{uint32_t(i), 0, b.name.c_str(), b.mem, b.ram_addr, b.length, kPage, b.dirty.data()});
    }
    *out = t.data();
    *count = uint32_t(t.size());
    return 0;
}

int32_t FakeNics(const PloverNic **out, uint32_t *count) {
    H().CheckMain("nics");
    auto &t = H().nic_table_;
    t.clear();
    for (size_t i = 0; i < H().nics.size(); i++) {
        auto &n = H().nics[i];
        PloverNic p{};
        p.id = uint32_t(i);
        p.vnet_hdr_len = n.vnet_hdr_len;
        p.filter_id = n.filter_id.c_str();
        p.netdev_id = n.netdev_id.c_str();
        p.nic_name = n.nic_name.c_str();
        memcpy(p.mac, n.mac, 6);
        t.push_back(p);
    }
    *out = t.data();
    *count = uint32_t(t.size());
    return 0;
}

// ---------------------------------------------------------------- FakeHost

FakeHost &FakeHost::Get() {
    static FakeHost *host = new FakeHost();  // never destroyed: library threads may still log at exit
    return *host;
}

void FakeHost::FreeRam() {
    for (auto &b : blocks) free(b.mem);
    blocks.clear();
}

void FakeHost::Reset(const std::string &role, const std::string &config, const std::string &node) {
    if (initialized_) Shutdown();
    Pump();  // leftovers of the previous test run against the previous state, then are gone
    main_thread = pthread_self();
    role_ = role;
    config_ = config;
    node_ = node;
    struct Spec { const char *name; uint64_t length, ram_addr; };
    const Spec specs[] = {{"pc.ram", 64ULL << 20, 0}, {"vga.vram", 8ULL << 20, 64ULL << 20}};
    if (blocks.size() != 2) {  // allocated once per process: tests only reset the content
        FreeRam();
        for (Spec s : specs) {
            FakeBlock b;
            b.name = s.name;
            b.length = s.length;
            b.ram_addr = s.ram_addr;
            b.mem = (uint8_t *)aligned_alloc(kPage, s.length);
            blocks.push_back(std::move(b));
        }
    }
    for (FakeBlock &b : blocks) {
        memset(b.mem, 0, b.length);
        b.dirty.assign((b.pages() + 63) / 64, 0);
        b.log.assign((b.pages() + 63) / 64, 0);
    }
    nics.clear();
    for (int i = 0; i < 2; i++) {
        FakeNic n;
        n.filter_id = "pf" + std::to_string(i);
        n.netdev_id = "n" + std::to_string(i);
        n.nic_name = "virtio-net-pci." + std::to_string(i);
        uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, uint8_t(0x56 + i)};
        memcpy(n.mac, mac, 6);
        n.vnet_hdr_len = 12;
        nics.push_back(std::move(n));
    }
    running = false;
    logging = false;
    {
        std::lock_guard<std::mutex> lock(fence_mu);
        fenced.clear();
    }
    device_state.resize(3000);
    for (size_t i = 0; i < device_state.size(); i++) device_state[i] = uint8_t(i * 31 + 7);
    saves = loads = bad_loads = frees = dirty_syncs = dirty_syncs_running = announces = stops = starts = 0;
    ram_updates.clear();
    off_main_calls = 0;
    refuse_schedule = false;
    off_main_names.clear();
    {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.clear();
        logs_.clear();
    }
    hooks = PloverHooks{};

    api = PloverHostApi{};
    api.struct_size = sizeof(PloverHostApi);
    api.abi_major = PLOVER_ABI_MAJOR;
    api.abi_minor = PLOVER_ABI_MINOR;
    api.qemu_version = "10.0.13-fake";
    api.object_id = "ft0";
    api.role = role_.c_str();
    api.config = config_.c_str();
    api.node = node_.c_str();
    api.target_page_size = kPage;
    api.log = FakeLog;
    api.schedule_main = FakeSchedule;
    api.fence = FakeFence;
    api.accel_name = FakeAccel;
    api.vm_is_running = FakeIsRunning;
    api.vm_stop = FakeStop;
    api.vm_start = FakeStart;
    api.ram_blocks = FakeRamBlocks;
    api.dirty_log_start = FakeDirtyLogStart;
    api.dirty_log_stop = FakeDirtyLogStop;
    api.dirty_sync = FakeDirtySync;
    api.dirty_clear = FakeDirtyClear;
    api.dirty_mark_all = FakeDirtyMarkAll;
    api.ram_updated = FakeRamUpdated;
    api.save_device_state = FakeSave;
    api.load_device_state = FakeLoad;
    api.free_buf = FakeFree;
    api.nics = FakeNics;
    api.net_inject = FakeInject;
    api.net_out_cut = FakeOutCut;
    api.net_out_release = FakeOutRelease;
    api.net_out_discard = FakeOutDiscard;
    api.net_out_mode = FakeOutMode;
    api.net_announce = FakeAnnounce;
    api.vcpu_thread_ids = FakeVcpus;
}

int32_t FakeHost::Init(std::string *err, size_t errlen) {
    std::vector<char> buf(errlen + 1, '\x7f');  // one guard byte past what the library may write
    int32_t rc = Lib().init(&api, &hooks, buf.data(), errlen);
    if (buf[errlen] != '\x7f') ADD_FAILURE() << "plover_qemu_init wrote past errlen";
    if (err != nullptr) *err = errlen > 0 ? std::string(buf.data(), strnlen(buf.data(), errlen)) : "";
    initialized_ = rc == 0;
    return rc;
}

void FakeHost::Shutdown() {
    if (!initialized_) return;
    initialized_ = false;
    if (hooks.shutdown != nullptr) hooks.shutdown(hooks.ctx);
}

void FakeHost::MachineReady() {
    if (hooks.machine_ready != nullptr) hooks.machine_ready(hooks.ctx);
}

void FakeHost::SetRunning(bool run) {
    running = run;
    if (hooks.vm_state_changed != nullptr) hooks.vm_state_changed(hooks.ctx, run ? 1 : 0, run ? "running" : "colo");
}

int32_t FakeHost::ToGuest(uint32_t nic, const std::vector<uint8_t> &frame, int pieces) {
    std::vector<struct iovec> iov;
    size_t step = (frame.size() + pieces - 1) / pieces;
    for (size_t at = 0; at < frame.size(); at += step)
        iov.push_back({(void *)(frame.data() + at), std::min(step, frame.size() - at)});
    return hooks.net_to_guest(hooks.ctx, nic, 0, iov.data(), int32_t(iov.size()));
}

void FakeHost::GuestSend(uint32_t nic, const std::vector<uint8_t> &frame) {
    auto &n = nics.at(nic);
    if (n.mode == PLOVER_OUT_PASS) n.sent.push_back(frame);
    else n.held[n.open_epoch].push_back(frame);
}

void FakeHost::NotifyFromGuest(uint32_t nic) {
    auto &n = nics.at(nic);
    uint64_t pkts = 0, bytes = 0;
    for (auto &[epoch, frames] : n.held)
        for (auto &f : frames) { pkts++; bytes += f.size(); }
    hooks.net_from_guest(hooks.ctx, nic, n.open_epoch, pkts, bytes);
}

void FakeHost::WritePage(uint32_t block, uint64_t page, uint8_t value) {
    FakeBlock &b = blocks.at(block);
    b.mem[page * kPage + (page * 13) % kPage] = value;
    if (logging) b.log[page / 64] |= 1ULL << (page % 64);
}

size_t FakeHost::Pump() {
    std::deque<std::pair<PloverMainFn, void *>> work;
    {
        std::lock_guard<std::mutex> lock(mu_);
        work.swap(queue_);
    }
    for (auto &[fn, opaque] : work) fn(opaque);
    return work.size();
}

bool FakeHost::PumpUntil(const std::function<bool()> &pred, std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end) return false;
        if (Pump() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

void FakeHost::CheckMain(const char *name) {
    if (!pthread_equal(pthread_self(), main_thread)) {
        off_main_calls++;
        std::lock_guard<std::mutex> lock(mu_);
        off_main_names += std::string(name) + " ";
    }
}

void FakeHost::Log(int32_t level, const char *msg) {
    std::lock_guard<std::mutex> lock(mu_);
    logs_.push_back({level, msg == nullptr ? "(null)" : msg});
}

int32_t FakeHost::Schedule(PloverMainFn fn, void *opaque) {
    if (fn == nullptr) return -EINVAL;
    if (refuse_schedule) return -EAGAIN;
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({fn, opaque});
    return 0;
}

bool FakeHost::LogContains(const std::string &text) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto &[level, msg] : logs_)
        if (msg.find(text) != std::string::npos) return true;
    return false;
}

std::vector<std::pair<int, std::string>> FakeHost::Logs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return logs_;
}

std::string FakeHost::LogText() const {
    std::ostringstream out;
    for (auto &[level, msg] : Logs()) out << "  [" << level << "] " << msg << "\n";
    return out.str();
}

// ---------------------------------------------------------------- TempCluster

TempCluster::TempCluster() {
    char tmpl[] = "/tmp/plover-nt-XXXXXX";
    dir = mkdtemp(tmpl);
    key = dir + "/node1.key";
    admin = dir + "/n1.sock";
    for (int id = 1; id <= 3; id++) plover_test::WriteNodeKey(dir + "/node" + std::to_string(id) + ".key", id);
    config = Write("cluster.json", Json("cluster.key", admin));
}

TempCluster::~TempCluster() {
    std::string cmd = "rm -rf '" + dir + "'";
    if (system(cmd.c_str()) != 0) fprintf(stderr, "could not remove %s\n", dir.c_str());
}

std::string TempCluster::Write(const std::string &name, const std::string &text) const {
    std::string path = dir + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
}

std::string TempCluster::Json(const std::string &key_file, const std::string &admin, const std::string &mode) {
    return R"({
  "cluster": "nt",
  "mode": ")" + mode + R"(",
  "keyFile": ")" + key_file + R"(",
  "nodes": [
    {"id": 1, "role": "primary", "address": "127.0.0.1:7401", )" + plover_test::NodeIdentityJson(1) +
           (admin.empty() ? "" : R"(, "admin": ")" + admin + "\"") + R"(},
    {"id": 2, "role": "backup",  "address": "127.0.0.1:7402", )" + plover_test::NodeIdentityJson(2) + R"(},
    {"id": 3, "role": "witness", "address": "127.0.0.1:7403", )" + plover_test::NodeIdentityJson(3) + R"(}
  ],
  "hashing": {"threads": 2}
})";
}
