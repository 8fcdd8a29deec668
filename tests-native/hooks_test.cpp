// Every hook can be called the way QEMU calls it (main thread), does what the probe promises, and never lets an
// exception out: errors are logged through host->log.
#include <gtest/gtest.h>

#include <dirent.h>

#include <fstream>
#include <string>
#include <thread>

#include "fake_host.h"

namespace {

// Names of this process's threads.
std::vector<std::string> ThreadNames() {
    std::vector<std::string> names;
    DIR *dir = opendir("/proc/self/task");
    while (dirent *e = readdir(dir)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/comm");
        std::string name;
        std::getline(in, name);
        names.push_back(name);
    }
    closedir(dir);
    return names;
}

class HooksTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(Lib().error.empty()) << Lib().error;
        host().Reset("primary", cluster.config, "1");
        std::string err;
        ASSERT_EQ(0, host().Init(&err)) << err;
    }
    void TearDown() override {
        host().Shutdown();
        host().Pump();
        EXPECT_EQ(0, host().off_main_calls.load()) << host().off_main_names;
    }
    static FakeHost &host() { return FakeHost::Get(); }
    TempCluster cluster;
};

TEST_F(HooksTest, MachineReadyLogsBlocksAndNicsAndStartsDirtyLogging) {
    EXPECT_FALSE(host().logging);
    host().MachineReady();
    EXPECT_TRUE(host().logging) << "machine_ready starts dirty logging";
    EXPECT_TRUE(host().LogContains("ram block 0 'pc.ram': 67108864 bytes")) << host().LogText();
    EXPECT_TRUE(host().LogContains("ram block 1 'vga.vram': 8388608 bytes at ram_addr 0x4000000")) << host().LogText();
    EXPECT_TRUE(host().LogContains("nic 1 filter 'pf1' netdev 'n1' nic 'virtio-net-pci.1' mac 52:54:00:12:34:57"))
        << host().LogText();
    EXPECT_TRUE(host().LogContains("dirty logging started (accel fake)")) << host().LogText();
}

// Probe mode (ABI 1.2): query-plover says so, and the operator runs the VM (stop, cont, reset all run).
TEST_F(HooksTest, ProbeModeReportsProbeAndLetsTheOperatorRunTheVm) {
    host().MachineReady();
    PloverInfo info{};
    info.struct_size = sizeof(info);
    ASSERT_EQ(0, host().hooks.query(host().hooks.ctx, &info));
    EXPECT_EQ(PLOVER_ROLE_PROBE, info.role);
    EXPECT_EQ(PLOVER_MODE_PROBE, info.mode);
    char err[256] = "";
    for (int32_t command : {PLOVER_CMD_STOP, PLOVER_CMD_CONT, PLOVER_CMD_SYSTEM_RESET, PLOVER_CMD_SYSTEM_POWERDOWN})
        EXPECT_EQ(PLOVER_CMD_RUN, host().hooks.operator_command(host().hooks.ctx, command, err, sizeof(err))) << command;
}

TEST_F(HooksTest, VmStateChangedIsLogged) {
    host().MachineReady();
    host().SetRunning(true);
    host().SetRunning(false);
    EXPECT_TRUE(host().LogContains("vm running (running)")) << host().LogText();
    EXPECT_TRUE(host().LogContains("vm stopped (colo)")) << host().LogText();
}

TEST_F(HooksTest, NetToGuestPassesByDefault) {
    host().MachineReady();
    std::vector<uint8_t> frame(60, 0xab);
    EXPECT_EQ(PLOVER_NET_PASS, host().ToGuest(0, frame));
    EXPECT_EQ(PLOVER_NET_PASS, host().ToGuest(1, frame, 3)) << "scattered over 3 iovecs";
    EXPECT_EQ(PLOVER_NET_PASS, host().ToGuest(9, frame)) << "a NIC the probe has not seen yet";
}

TEST_F(HooksTest, NetToGuestWithABadIovecIsLoggedAndPasses) {
    EXPECT_EQ(PLOVER_NET_PASS, host().hooks.net_to_guest(host().hooks.ctx, 0, 0, nullptr, 2));
    EXPECT_EQ(PLOVER_NET_PASS, host().hooks.net_to_guest(host().hooks.ctx, 0, 0, nullptr, -1));
    EXPECT_TRUE(host().LogContains("hook net_to_guest failed")) << host().LogText();
}

TEST_F(HooksTest, NetFromGuestIsAccepted) {
    host().MachineReady();
    host().GuestSend(0, std::vector<uint8_t>(100, 1));
    host().NotifyFromGuest(0);
    host().hooks.net_from_guest(host().hooks.ctx, 5, 3, 2, 200);  // any NIC number, coalesced counts
    EXPECT_FALSE(host().LogContains("failed")) << host().LogText();
}

TEST_F(HooksTest, HooksBeforeMachineReadyDoNotFail) {
    host().SetRunning(false);
    EXPECT_EQ(PLOVER_NET_PASS, host().ToGuest(0, std::vector<uint8_t>(42, 0)));
    host().hooks.net_from_guest(host().hooks.ctx, 0, 1, 0, 0);
    EXPECT_FALSE(host().LogContains("failed")) << host().LogText();
}

TEST_F(HooksTest, AHostFailureInAHookIsLoggedNotThrown) {
    host().Shutdown();
    host().Reset("primary", cluster.config, "1");
    host().api.ram_blocks = [](const PloverRamBlock **, uint32_t *) -> int32_t { return -5; };
    ASSERT_EQ(0, host().Init());
    host().MachineReady();  // the library's RamBlocks throws; the hook must catch and log it
    EXPECT_TRUE(host().LogContains("hook machine_ready failed: InvalidOperationException: ram_blocks failed: -5"))
        << host().LogText();
}

// NativeAOT does not name OS threads, so this counts them: the admin thread and the hash worker (hashing.threads
// 2 = one worker plus the caller) must be gone after shutdown.
TEST_F(HooksTest, ShutdownStopsTheLibraryThreads) {
    size_t running = ThreadNames().size();
    host().Shutdown();
    EXPECT_TRUE(host().PumpUntil([&] { return ThreadNames().size() <= running - 2; }, std::chrono::seconds(5)))
        << "threads before shutdown " << running << ", after " << ThreadNames().size();
    EXPECT_TRUE(host().LogContains("node 1 stopped")) << host().LogText();
}

TEST_F(HooksTest, AHookCalledOffTheMainThreadIsRefusedAndLogged) {
    std::vector<uint8_t> frame(64, 1);
    int32_t rc = -1;
    std::thread other([&] {
        struct iovec iov = {frame.data(), frame.size()};
        rc = host().hooks.net_to_guest(host().hooks.ctx, 0, 0, &iov, 1);
        host().hooks.machine_ready(host().hooks.ctx);
    });
    other.join();
    EXPECT_EQ(PLOVER_NET_PASS, rc);
    EXPECT_FALSE(host().logging) << "machine_ready off the main thread did nothing";
    EXPECT_TRUE(host().LogContains("hook machine_ready failed: InvalidOperationException: hook called off QEMU's main thread"))
        << host().LogText();
}

TEST_F(HooksTest, HooksAfterShutdownAreIgnored) {
    PloverHooks h = host().hooks;
    host().Shutdown();
    std::vector<uint8_t> frame(64, 7);
    struct iovec iov = {frame.data(), frame.size()};
    EXPECT_EQ(PLOVER_NET_PASS, h.net_to_guest(h.ctx, 0, 0, &iov, 1));
    h.machine_ready(h.ctx);
    h.vm_state_changed(h.ctx, 1, "running");
    h.net_from_guest(h.ctx, 0, 1, 1, 64);
    h.shutdown(h.ctx);  // twice is harmless
    EXPECT_FALSE(host().logging) << "machine_ready after shutdown did nothing";
}

}  // namespace
