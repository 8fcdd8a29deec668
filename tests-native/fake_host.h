// A fake QEMU for the native tests: implements PloverHostApi in C++ and drives the real libplover.so.
//
// - RAM: malloc'd blocks ("pc.ram" 64 MiB, "vga.vram" 8 MiB) with the exported dirty bitmaps and a separate
//   "dirty log" (what the guest wrote since the last harvest) that WritePage marks and dirty_sync harvests.
// - A main-thread queue: schedule_main (any thread) queues, the test thread (the "main thread") runs the queue
//   with Pump(). Every MAIN-only host call checks it runs on that thread and counts violations.
// - NICs that record injected frames and hold guest output per epoch (net_out_*), device state that load
//   checks against what save produced, a vm running flag that calls vm_state_changed like QEMU does, and a
//   log capture.
// The host API has no context pointer, so there is one FakeHost per process (FakeHost::Get()).
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "plover_abi.h"

typedef int64_t (*PloverAbiLayoutFn)(const char *type, const char *field);

// The library under test, dlopen'ed once per process from $PLOVER_LIB (a NativeAOT library cannot be unloaded).
struct PloverLib {
    void *handle = nullptr;
    PloverAbiVersionFn abi_version = nullptr;
    PloverInitFn init = nullptr;
    PloverAbiLayoutFn abi_layout = nullptr;
    std::string error;  // non-empty: why the library could not be loaded
};
const PloverLib &Lib();
// Fails the current test (and returns false) when the library is not usable.
bool RequireLib();

constexpr uint64_t kPage = 4096;

struct FakeBlock {
    std::string name;
    uint8_t *mem = nullptr;
    uint64_t length = 0;
    uint64_t ram_addr = 0;
    std::vector<uint64_t> dirty;  // exported to the library: dirty_sync ORs the log in, dirty_clear zeroes
    std::vector<uint64_t> log;    // pages the guest wrote since the last harvest
    uint64_t pages() const { return length / kPage; }
};

struct FakeNic {
    std::string filter_id, netdev_id, nic_name;
    uint8_t mac[6] = {};
    uint32_t vnet_hdr_len = 0;
    std::vector<std::vector<uint8_t>> injected;              // net_inject: frames delivered into the guest
    int32_t mode = PLOVER_OUT_HOLD;                          // net_out_mode
    uint64_t open_epoch = 1;                                 // epoch that guest output goes into now
    std::map<uint64_t, std::vector<std::vector<uint8_t>>> held;  // epoch -> frames held
    std::vector<std::vector<uint8_t>> sent;                  // released to the outside world
    uint64_t discarded = 0;
};

class FakeHost {
public:
    static FakeHost &Get();

    // Fresh state (RAM, NICs, queue, logs); the calling thread becomes the main thread. The -object arguments.
    void Reset(const std::string &role, const std::string &config, const std::string &node);

    // plover_qemu_init against this host; fills hooks. Returns the library's result, err gets its message.
    int32_t Init(std::string *err = nullptr, size_t errlen = 512);
    bool initialized() const { return initialized_; }
    // Calls the shutdown hook (once) if Init succeeded.
    void Shutdown();

    // ---- what QEMU would do ----
    void MachineReady();                       // the machine_ready hook
    void SetRunning(bool running);            // like cont/stop from the monitor: calls vm_state_changed
    int32_t ToGuest(uint32_t nic, const std::vector<uint8_t> &frame, int pieces = 1);  // net_to_guest hook
    void GuestSend(uint32_t nic, const std::vector<uint8_t> &frame);  // guest output: held or sent by mode
    void NotifyFromGuest(uint32_t nic);        // the coalesced net_from_guest hook for a NIC
    void WritePage(uint32_t block, uint64_t page, uint8_t value);  // guest writes one byte of a page

    // Runs the queued main-thread functions on this thread; returns how many ran.
    size_t Pump();
    // Pumps until pred() or the timeout; returns pred().
    bool PumpUntil(const std::function<bool()> &pred, std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // ---- observations ----
    bool LogContains(const std::string &text) const;
    std::vector<std::pair<int, std::string>> Logs() const;
    std::string LogText() const;

    PloverHostApi api{};
    PloverHooks hooks{};
    std::vector<FakeBlock> blocks;
    std::vector<FakeNic> nics;
    bool running = false;
    bool logging = false;
    std::vector<uint8_t> device_state;         // what save_device_state returns
    int saves = 0, loads = 0, bad_loads = 0, frees = 0, dirty_syncs = 0, dirty_syncs_running = 0;
    int announces = 0, stops = 0, starts = 0;
    std::vector<std::pair<uint32_t, std::pair<uint64_t, uint64_t>>> ram_updates;
    std::atomic<bool> refuse_schedule{false};  // schedule_main fails with -EAGAIN
    std::mutex fence_mu;
    std::string fenced;                        // why the library called fence ("" = never)
    std::string Fenced() { std::lock_guard<std::mutex> lock(fence_mu); return fenced; }
    std::atomic<int> off_main_calls{0};        // MAIN-only calls made off the main thread
    std::string off_main_names;
    pthread_t main_thread{};

    // host-side helpers used by the C callbacks
    void CheckMain(const char *name);
    void Log(int32_t level, const char *msg);
    int32_t Schedule(PloverMainFn fn, void *opaque);

private:
    FakeHost() = default;
    void FreeRam();

    std::string role_, config_, node_;
    bool initialized_ = false;
    std::vector<PloverRamBlock> block_table_;
    std::vector<PloverNic> nic_table_;
    mutable std::mutex mu_;  // guards queue_ and logs_ (touched from library threads)
    std::deque<std::pair<PloverMainFn, void *>> queue_;
    std::vector<std::pair<int, std::string>> logs_;

    friend int32_t FakeRamBlocks(const PloverRamBlock **, uint32_t *);
    friend int32_t FakeNics(const PloverNic **, uint32_t *);
};

// A cluster config in a fresh temporary folder: node1.key..node3.key (test_keys.h, each node's own) and cluster.json (mode probe) with node 1
// primary (admin socket in the folder), node 2 backup, node 3 witness.
struct TempCluster {
    TempCluster();
    ~TempCluster();
    std::string dir, config, key, admin;
    // Writes text to dir/name and returns the path.
    std::string Write(const std::string &name, const std::string &text) const;
    // mode "probe" (the hooks tests: the library only observes) or "replicate" (the product).
    static std::string Json(const std::string &key_file, const std::string &admin, const std::string &mode = "probe");
};
