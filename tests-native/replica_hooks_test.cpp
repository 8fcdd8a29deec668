// The library in replicate mode (the product) against the fake host: machine_ready starts the replica (output held
// on every NIC, the guest started by the library), frames on their way into the guest are stolen (never passed
// straight through), the admin socket answers the replica commands and refuses the probe's manual controls, and
// shutdown stops it all. Consensus and syncvm themselves are tested in tests-managed and end to end.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <thread>

#include "admin_client.h"
#include "fake_host.h"

namespace {

using namespace admin;

class ReplicaHooksTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(Lib().error.empty()) << Lib().error;
        std::string json = TempCluster::Json("cluster.key", cluster.admin, "replicate");
        // ports of their own: nothing else listens there
        for (auto [from, to] : {std::pair{"7401", "27461"}, {"7402", "27463"}, {"7403", "27465"}})
            json.replace(json.find(from), 4, to);
        // no peer ever answers here: give up on the cluster quickly
        json.replace(json.find("\"hashing\""), 0, "\"timeouts\": {\"startupMs\": 700},\n  ");
        config = cluster.Write("replicate.json", json);
        host().Reset("primary", config, "1");
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
    std::string config;
};

TEST_F(ReplicaHooksTest, MachineReadyStartsTheReplicaHoldingOutput) {
    EXPECT_TRUE(host().LogContains("started in replicate mode")) << host().LogText();
    host().MachineReady();
    EXPECT_TRUE(host().logging) << "dirty logging is on from machine_ready";
    EXPECT_TRUE(host().LogContains("node 1 runs as a replica: 2 RAM block(s), 2 NIC(s)")) << host().LogText();
    for (auto &nic : host().nics) EXPECT_EQ(PLOVER_OUT_HOLD, nic.mode) << nic.filter_id;
}

// Without its peers the guest never starts: after timeouts.startupMs the library stops QEMU (fence) and says why.
TEST_F(ReplicaHooksTest, WithoutAClusterTheGuestNeverStartsAndQemuStopsWithTheReason) {
    host().MachineReady();
    EXPECT_TRUE(host().PumpUntil([&] { return !host().Fenced().empty(); }, std::chrono::seconds(10))) << host().LogText();
    std::string why = host().Fenced();
    EXPECT_NE(why.find("node 1 cannot join cluster 'nt'"), std::string::npos) << why;
    // no peer ever answered, so the start-up probe (fresh cluster or join a running one) never decided
    EXPECT_NE(why.find("no answer to the start-up probe from node 2 (cannot connect to"), std::string::npos) << why;
    EXPECT_FALSE(host().running) << "the guest must not run outside a working cluster";
    EXPECT_EQ(0, host().starts);
}

TEST_F(ReplicaHooksTest, FramesIntoTheGuestAreStolenNotPassed) {
    EXPECT_EQ(PLOVER_NET_CONSUMED, host().ToGuest(0, std::vector<uint8_t>(60, 1))) << "before machine_ready: dropped";
    host().MachineReady();
    EXPECT_EQ(PLOVER_NET_CONSUMED, host().ToGuest(0, std::vector<uint8_t>(60, 2)));
    EXPECT_EQ(PLOVER_NET_CONSUMED, host().ToGuest(1, std::vector<uint8_t>(1514, 3), 3));
    host().Pump();
    for (auto &nic : host().nics) EXPECT_TRUE(nic.injected.empty()) << "nothing reaches the guest without consensus";
}

// A frame the input hook fails on (a frame over 1 MiB; here a call from the wrong thread, which fails the same way)
// used to go into the guest past the log: it is dropped and counted.
TEST_F(ReplicaHooksTest, AFrameTheInputHookFailsOnIsDroppedNotPassed) {
    host().MachineReady();
    int32_t rc = 0;
    std::thread other([&] { rc = host().ToGuest(0, std::vector<uint8_t>(60, 7)); });
    other.join();
    EXPECT_EQ(PLOVER_NET_CONSUMED, rc);
    EXPECT_TRUE(host().LogContains("hook net_to_guest failed")) << host().LogText();
    host().Pump();
    for (auto &nic : host().nics) EXPECT_TRUE(nic.injected.empty());
    AdminClient client(cluster.admin);
    std::string r = client.Request("replica");
    ASSERT_TRUE(Ok(r)) << r;
    EXPECT_EQ(1, Num(r, "inputsDroppedOnError")) << r;
}

TEST_F(ReplicaHooksTest, AdminAnswersReplicaCommandsAndRefusesManualControls) {
    host().MachineReady();
    AdminClient client(cluster.admin);
    ASSERT_TRUE(client.connected());
    std::string r = client.Request("replica");
    ASSERT_TRUE(Ok(r)) << r;
    EXPECT_EQ("starting", Str(r, "role")) << "no peer answered the start-up probe: " << r;
    EXPECT_EQ("holding", Str(r, "guard"));
    EXPECT_FALSE(Bool(r, "protected")) << "no backup is connected: " << r;
    EXPECT_NE(Str(r, "problem").find("the start-up probe is still waiting"), std::string::npos) << r;
    r = client.Request("status");
    EXPECT_EQ("replicate", Str(r, "mode")) << r;
    r = client.Request("syncs");
    EXPECT_TRUE(Ok(r)) << r;
    r = client.Request("sync-now");
    EXPECT_NE(Error(r).find("cannot propose a sync"), std::string::npos) << r;
    for (const char *manual : {"inject 0 00", "out-release 0 1", "steal 0 on", "dirty-sync", "devstate-roundtrip", "hash-ram"}) {
        r = client.Request(manual);
        EXPECT_NE(Error(r).find("not available in replicate mode"), std::string::npos) << manual << ": " << r;
    }
    r = client.Request("verify-result");
    EXPECT_TRUE(Ok(r)) << r;
    EXPECT_NE(r.find("\"result\":null"), std::string::npos) << r;
    r = client.Request("verify-device mc146818rtc");
    EXPECT_NE(Error(r).find("no verify result yet"), std::string::npos) << r;
}

// query-plover's data (ABI 1.2): before the cluster is up the node is starting and says what it waits for.
TEST_F(ReplicaHooksTest, QueryReportsTheNodeStartingAndWhatItWaitsFor) {
    host().MachineReady();
    ASSERT_NE(nullptr, host().hooks.query);
    PloverInfo info{};
    info.struct_size = sizeof(info);
    ASSERT_EQ(0, host().hooks.query(host().hooks.ctx, &info));
    EXPECT_EQ(sizeof(info), info.struct_size);
    EXPECT_EQ(PLOVER_ROLE_STARTING, info.role);
    EXPECT_EQ(PLOVER_MODE_REPLICATE, info.mode);
    EXPECT_EQ(1u, info.node);
    EXPECT_EQ(0, info.is_protected);
    EXPECT_EQ(0u, info.last_sync_epoch) << "no sync yet";
    std::string problem(info.problem);
    EXPECT_NE(problem.find("start-up probe"), std::string::npos) << problem;
}

// An older host's shorter struct: the library writes no byte past the struct_size the host gave.
TEST_F(ReplicaHooksTest, QueryWritesNothingPastTheHostsStructSize) {
    host().MachineReady();
    struct {
        PloverInfo info;
        uint64_t canary;
    } buf;
    memset(&buf, 0xAB, sizeof(buf));
    uint32_t shorter = offsetof(PloverInfo, term);
    buf.info.struct_size = shorter;
    ASSERT_EQ(0, host().hooks.query(host().hooks.ctx, &buf.info));
    EXPECT_EQ(shorter, buf.info.struct_size);
    const uint8_t *rest = reinterpret_cast<const uint8_t *>(&buf.info) + shorter;
    for (size_t i = 0; i < sizeof(buf) - shorter; i++) ASSERT_EQ(0xAB, rest[i]) << "byte " << shorter + i;
}

// An operator's stop, system_reset or system_powerdown (QMP or HMP) is refused while the library replicates, with
// a message that says why; cont succeeds without effect (the library runs the guest).
TEST_F(ReplicaHooksTest, OperatorStopResetAndPowerdownAreRefusedAndContIsIgnored) {
    host().MachineReady();
    ASSERT_NE(nullptr, host().hooks.operator_command);
    char err[1024];
    for (auto [command, name] : {std::pair{PLOVER_CMD_STOP, "'stop'"}, {PLOVER_CMD_SYSTEM_RESET, "'system_reset'"},
                                 {PLOVER_CMD_SYSTEM_POWERDOWN, "'system_powerdown'"}}) {
        err[0] = 0;
        EXPECT_GT(0, host().hooks.operator_command(host().hooks.ctx, command, err, sizeof(err))) << name;
        std::string why(err);
        EXPECT_NE(why.find(std::string(name) + " is refused: Plover replicates this VM (node 1, starting)"),
                  std::string::npos) << why;
    }
    err[0] = 0;
    EXPECT_EQ(PLOVER_CMD_IGNORE, host().hooks.operator_command(host().hooks.ctx, PLOVER_CMD_CONT, err, sizeof(err)));
    char tiny[8];
    EXPECT_GT(0, host().hooks.operator_command(host().hooks.ctx, PLOVER_CMD_STOP, tiny, sizeof(tiny)));
    EXPECT_EQ(7u, strlen(tiny)) << "truncated and terminated";
}

TEST_F(ReplicaHooksTest, ShutdownStopsTheReplica) {
    host().MachineReady();
    host().Pump();
    host().Shutdown();
    EXPECT_TRUE(host().PumpUntil([&] { return host().LogContains("node 1 stopped"); })) << host().LogText();
    EXPECT_TRUE(host().LogContains("replica stopped")) << host().LogText();
}

}  // namespace
