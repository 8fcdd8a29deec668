// The admin socket end to end: a client connects to the Unix socket of a library running against the fake host,
// sends one request per line and reads one JSON reply per line. The test thread is QEMU's main thread: while it
// waits for a reply it pumps the main-thread queue, through which the library runs every host call.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "admin_client.h"
#include "fake_host.h"

namespace {

using namespace admin;

class AdminTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(Lib().error.empty()) << Lib().error;
        host().Reset("primary", cluster.config, "1");
        std::string err;
        ASSERT_EQ(0, host().Init(&err)) << err;
        client = std::make_unique<AdminClient>(cluster.admin);
        ASSERT_TRUE(client->connected()) << cluster.admin;
    }
    void TearDown() override {
        client.reset();
        host().Shutdown();
        host().Pump();
        EXPECT_EQ(0, host().off_main_calls.load()) << "host MAIN calls off the main thread: " << host().off_main_names;
    }
    static FakeHost &host() { return FakeHost::Get(); }
    std::string Request(const std::string &line) { return client->Request(line); }

    TempCluster cluster;
    std::unique_ptr<AdminClient> client;
};

TEST_F(AdminTest, StatusReportsTheNodeAndTheHost) {
    std::string r = Request("status");
    ASSERT_TRUE(Ok(r)) << r;
    EXPECT_EQ("primary", Str(r, "role"));
    EXPECT_EQ(1, Num(r, "node"));
    EXPECT_EQ("nt", Str(r, "cluster"));
    EXPECT_EQ("10.0.13-fake", Str(r, "qemuVersion"));
    EXPECT_EQ("1." + std::to_string(PLOVER_ABI_MINOR), Str(r, "abiVersion"));
    EXPECT_NE(std::string::npos, r.find("\"accel\":null")) << "no accel before machine_ready: " << r;
    EXPECT_FALSE(Bool(r, "machineReady"));
    EXPECT_FALSE(Bool(r, "running"));
    EXPECT_FALSE(Str(r, "hashKernel").empty());

    host().MachineReady();
    host().SetRunning(true);
    r = Request("status");
    EXPECT_EQ("fake", Str(r, "accel")) << r;
    EXPECT_TRUE(Bool(r, "machineReady"));
    EXPECT_TRUE(Bool(r, "running"));
    EXPECT_EQ("running", Str(r, "runState"));
}

TEST_F(AdminTest, RamBlocksListsTheHostBlocks) {
    EXPECT_NE(std::string::npos, Error(Request("ramblocks")).find("machine is not ready"));
    host().MachineReady();
    std::string r = Request("ramblocks");
    ASSERT_TRUE(Ok(r)) << r;
    EXPECT_EQ("pc.ram", Str(r, "name", 0));
    EXPECT_EQ(64 << 20, Num(r, "length", 0));
    EXPECT_EQ(0, Num(r, "ramAddr", 0));
    EXPECT_EQ(4096, Num(r, "hostPageSize", 0));
    EXPECT_EQ("vga.vram", Str(r, "name", 1));
    EXPECT_EQ(1, Num(r, "id", 1));
    EXPECT_EQ(8 << 20, Num(r, "length", 1));
    EXPECT_EQ(64 << 20, Num(r, "ramAddr", 1));
}

TEST_F(AdminTest, DirtySyncListsExactlyThePagesTheGuestWrote) {
    host().MachineReady();
    host().WritePage(0, 3, 1);  // before a harvest: logged
    host().SetRunning(true);
    for (uint64_t p : {0, 5, 64, 65, 16383}) host().WritePage(0, p, 9);
    host().WritePage(0, 5, 10);  // twice: one page
    host().WritePage(1, 2047, 1);

    std::string r = Request("dirty-sync list");
    ASSERT_TRUE(Ok(r)) << r;
    EXPECT_EQ(7, Num(r, "harvested"));
    EXPECT_TRUE(Bool(r, "wasRunning"));
    EXPECT_EQ(6, Num(r, "dirtyPages", 0));
    EXPECT_EQ((std::vector<int64_t>{0, 3, 5, 64, 65, 16383}), Nums(r, "pages", 0));
    EXPECT_EQ(1, Num(r, "dirtyPages", 1));
    EXPECT_EQ((std::vector<int64_t>{2047}), Nums(r, "pages", 1));
    EXPECT_FALSE(Bool(r, "truncated"));

    EXPECT_EQ(1, host().dirty_syncs);
    EXPECT_EQ(0, host().dirty_syncs_running) << "dirty_sync must run with the VM stopped";
    EXPECT_TRUE(host().running) << "resumed after the sync";
    for (auto &b : host().blocks)
        for (uint64_t w : b.dirty) ASSERT_EQ(0u, w) << "dirty_clear after the sync";

    r = Request("dirty-sync");
    EXPECT_EQ(0, Num(r, "dirtyPages", 0)) << r;
    EXPECT_EQ(std::string::npos, r.find("\"pages\"")) << "no page list without 'list'";

    host().SetRunning(false);
    host().WritePage(1, 0, 3);
    r = Request("dirty-sync list");
    EXPECT_FALSE(Bool(r, "wasRunning"));
    EXPECT_EQ((std::vector<int64_t>{0}), Nums(r, "pages", 1));
    EXPECT_FALSE(host().running) << "a stopped VM stays stopped";
}

TEST_F(AdminTest, DirtyMarkAllAndDirtyClear) {
    host().MachineReady();
    ASSERT_TRUE(Ok(Request("dirty-mark-all")));
    std::string r = Request("dirty-sync list");
    EXPECT_EQ(16384, Num(r, "dirtyPages", 0)) << r.substr(0, 200);
    EXPECT_EQ(2048, Num(r, "dirtyPages", 1));
    EXPECT_EQ(16384u, Nums(r, "pages", 0).size());
    EXPECT_EQ(16383, Nums(r, "pages", 0).back());

    ASSERT_TRUE(Ok(Request("dirty-mark-all")));
    ASSERT_TRUE(Ok(Request("dirty-clear")));
    r = Request("dirty-sync");
    EXPECT_EQ(0, Num(r, "dirtyPages", 0)) << r;
}

TEST_F(AdminTest, DevStateRoundTripSavesAndLoadsWithTheVmStopped) {
    host().MachineReady();
    host().SetRunning(true);
    std::string r = Request("devstate-roundtrip");
    ASSERT_TRUE(Ok(r)) << r;
    EXPECT_EQ(3000, Num(r, "bytes"));
    EXPECT_EQ(1, host().saves);
    EXPECT_EQ(1, host().loads);
    EXPECT_EQ(0, host().bad_loads) << "load got exactly what save produced, with the VM stopped";
    EXPECT_EQ(1, host().frees);
    EXPECT_TRUE(host().running);
}

TEST_F(AdminTest, NicsDescribesEachNic) {
    std::string r = Request("nics");
    ASSERT_TRUE(Ok(r)) << r;
    EXPECT_EQ("pf0", Str(r, "filterId", 0));
    EXPECT_EQ("n1", Str(r, "netdevId", 1));
    EXPECT_EQ("virtio-net-pci.1", Str(r, "nicName", 1));
    EXPECT_EQ("52:54:00:12:34:57", Str(r, "mac", 1));
    EXPECT_EQ(12, Num(r, "vnetHdrLen", 0));
}

TEST_F(AdminTest, InjectReachesTheFakeNic) {
    std::vector<uint8_t> frame = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 1, 2, 3, 0x08, 0x06, 0xde, 0xad};
    std::string r = Request("inject 1 " + Hex(frame));
    ASSERT_TRUE(Ok(r)) << r;
    EXPECT_EQ(0, Num(r, "rc"));
    ASSERT_EQ(1u, host().nics[1].injected.size());
    EXPECT_EQ(frame, host().nics[1].injected[0]);
    EXPECT_TRUE(host().nics[0].injected.empty());
    EXPECT_NE(std::string::npos, Error(Request("inject 2 00")).find("no NIC 2 (the host has 2)"));
    EXPECT_NE(std::string::npos, Error(Request("inject 0 abc")).find("hex"));
    EXPECT_NE(std::string::npos, Error(Request("inject 0 zz")).find("hex"));
}

TEST_F(AdminTest, StealKeepsTheLastFramesAndDoesNotDeliver) {
    host().MachineReady();
    ASSERT_TRUE(Ok(Request("steal 0 on")));
    std::vector<std::vector<uint8_t>> frames;
    for (int i = 0; i < 10; i++) {
        frames.push_back(std::vector<uint8_t>(60 + i, uint8_t(i)));
        EXPECT_EQ(PLOVER_NET_CONSUMED, host().ToGuest(0, frames.back(), 1 + i % 3));
    }
    EXPECT_EQ(PLOVER_NET_PASS, host().ToGuest(1, frames[0])) << "steal is per NIC";
    std::string r = Request("stolen 0");
    ASSERT_TRUE(Ok(r)) << r;
    EXPECT_EQ(10, Num(r, "count"));
    EXPECT_EQ(10 * 60 + 45, Num(r, "bytes"));
    std::vector<std::string> last = Strs(r, "last");
    ASSERT_EQ(8u, last.size());
    for (int i = 0; i < 8; i++) EXPECT_EQ(Hex(frames[2 + i]), last[i]) << i;

    ASSERT_TRUE(Ok(Request("steal 0 off")));
    EXPECT_EQ(PLOVER_NET_PASS, host().ToGuest(0, frames[0]));
    r = Request("stolen 1");
    EXPECT_EQ(0, Num(r, "count"));
    EXPECT_TRUE(Strs(r, "last").empty());
}

TEST_F(AdminTest, NetStatsCountsFramesIntoTheGuest) {
    host().MachineReady();
    for (int i = 0; i < 3; i++) host().ToGuest(1, std::vector<uint8_t>(100, 1));
    std::string r = Request("net-stats");
    ASSERT_TRUE(Ok(r)) << r;
    EXPECT_EQ(0, Num(r, "toGuestFrames", 0));
    EXPECT_EQ(3, Num(r, "toGuestFrames", 1));
    EXPECT_EQ(300, Num(r, "toGuestBytes", 1));
    EXPECT_EQ(0, Num(r, "stolenFrames", 1));
}

TEST_F(AdminTest, OutputHoldCutReleaseAndDiscard) {
    host().MachineReady();
    ASSERT_TRUE(Ok(Request("out-mode 0 hold")));
    for (int i = 0; i < 3; i++) host().GuestSend(0, std::vector<uint8_t>(50, uint8_t(i)));
    host().NotifyFromGuest(0);
    std::string r = Request("net-stats");
    EXPECT_EQ(3, Num(r, "heldPkts", 0)) << r;
    EXPECT_EQ(150, Num(r, "heldBytes", 0));
    EXPECT_EQ(1, Num(r, "epoch", 0));

    r = Request("out-cut 0");
    ASSERT_TRUE(Ok(r)) << r;
    EXPECT_EQ(1, Num(r, "epoch"));
    for (int i = 0; i < 2; i++) host().GuestSend(0, std::vector<uint8_t>(70, 9));  // epoch 2
    r = Request("out-release 0 1");
    ASSERT_TRUE(Ok(r)) << r;
    EXPECT_EQ(3, Num(r, "released"));
    EXPECT_EQ(3u, host().nics[0].sent.size());
    EXPECT_EQ(1u, host().nics[0].held.size());

    EXPECT_EQ(2, Num(Request("out-cut 0"), "epoch"));
    r = Request("out-discard 0 2");
    EXPECT_EQ(2, Num(r, "discarded")) << r;
    EXPECT_TRUE(host().nics[0].held.empty());
    EXPECT_EQ(3u, host().nics[0].sent.size());

    r = Request("net-stats");
    EXPECT_EQ(3, Num(r, "released", 0)) << r;
    EXPECT_EQ(2, Num(r, "discarded", 0));
    EXPECT_EQ(2, Num(r, "lastCut", 0));

    ASSERT_TRUE(Ok(Request("out-mode 0 pass")));
    host().GuestSend(0, std::vector<uint8_t>(10, 1));
    EXPECT_EQ(4u, host().nics[0].sent.size());
    EXPECT_NE(std::string::npos, Error(Request("out-release 0 x")).find("EPOCH 'x' is not a number"));
}

TEST_F(AdminTest, HashRamDigestFollowsTheContentOfRam) {
    host().MachineReady();
    host().SetRunning(true);
    std::string a = Request("hash-ram");
    ASSERT_TRUE(Ok(a)) << a;
    EXPECT_TRUE(host().running) << "resumed after hashing";
    EXPECT_EQ(1, host().stops);
    EXPECT_EQ(16384, Num(a, "pages", 0));
    EXPECT_EQ(2048, Num(a, "pages", 1));
    std::string b = Request("hash-ram");
    EXPECT_EQ(Str(a, "digest"), Str(b, "digest")) << "same RAM, same digest";

    host().WritePage(1, 100, 0x5a);
    std::string c = Request("hash-ram");
    EXPECT_EQ(Str(a, "digest", 1), Str(c, "digest", 1)) << "pc.ram unchanged";
    EXPECT_NE(Str(a, "digest", 2), Str(c, "digest", 2)) << "vga.vram changed";
    EXPECT_NE(Str(a, "digest"), Str(c, "digest"));
    host().WritePage(1, 100, 0);
    EXPECT_EQ(Str(a, "digest"), Str(Request("hash-ram"), "digest")) << "restored RAM, restored digest";

    // The block digest is CityHash64 over the page hashes (little-endian), as the reply documents.
    auto city = (PloverCityHash64Fn)dlsym(Lib().handle, "plover_cityhash64");
    auto pages = (PloverHashPagesFn)dlsym(Lib().handle, "plover_hash_pages");
    ASSERT_TRUE(city && pages);
    const FakeBlock &vram = host().blocks[1];
    std::vector<uint64_t> hashes(vram.pages());
    ASSERT_EQ(int64_t(vram.pages()), pages(vram.mem, vram.pages(), nullptr, hashes.data(), 1));
    char expected[17];
    snprintf(expected, sizeof expected, "%016llx",
             (unsigned long long)city((const uint8_t *)hashes.data(), hashes.size() * 8));
    EXPECT_EQ(expected, Str(a, "digest", 2));
}

TEST_F(AdminTest, VcpusListsTheThreadIds) {
    std::string r = Request("vcpus");
    ASSERT_TRUE(Ok(r)) << r;
    EXPECT_EQ((std::vector<int64_t>{4242, 4243}), Nums(r, "tids"));
}

TEST_F(AdminTest, BadRequestsGetErrorRepliesAndTheSocketKeepsServing) {
    struct Case { std::string request, error; };
    std::vector<Case> cases = {
        {"", "empty request"},
        {"   ", "empty request"},
        {"bogus", "unknown command 'bogus'"},
        {"STATUS", "unknown command 'STATUS'"},
        {"inject", "usage: inject NIC HEX"},
        {"inject 0", "usage: inject NIC HEX"},
        {"inject -1 00", "NIC '-1' is not a NIC number"},
        {"inject 99999999999 00", "is not a NIC number"},
        {"steal 0 maybe", "usage: steal NIC on|off"},
        {"stolen", "usage: stolen NIC"},
        {"out-mode 0 open", "usage: out-mode NIC hold|pass"},
        {"out-cut 7", "no NIC 7"},
        {"out-release 0", "usage: out-release NIC EPOCH"},
        {"out-discard 0 -3", "EPOCH '-3' is not a number"},
        {"dirty-sync everything", "usage: dirty-sync [list]"},
        {"dirty-sync", "machine is not ready"},
        {"hash-ram", "machine is not ready"},
        {"devstate-roundtrip", "machine is not ready"},
        {std::string("\x01\x02\xff\xfe", 4), "unknown command"},
    };
    for (auto &c : cases) {
        std::string r = Request(c.request);
        EXPECT_NE(std::string::npos, Error(r).find(c.error)) << "request '" << c.request << "' got " << r;
    }
    // Two requests in one write, and a request split over two writes: replies come in order.
    client->Send("nics\nvcpus\n");
    EXPECT_TRUE(Ok(client->ReadLine()));
    EXPECT_NE(std::string::npos, client->ReadLine().find("\"tids\""));
    client->Send("sta");
    client->Send("tus\r\n");
    EXPECT_NE(std::string::npos, client->ReadLine().find("\"role\":\"primary\""));
    EXPECT_TRUE(Ok(Request("help")));
}

TEST_F(AdminTest, AnOverlongLineClosesOnlyThatConnection) {
    AdminClient other(cluster.admin);
    ASSERT_TRUE(other.connected());
    client->Send(std::string(1100 * 1024, 'a'));  // no newline, over the 1 MiB limit
    std::string r = client->ReadLine();
    EXPECT_NE(std::string::npos, Error(r).find("longer than 1048576 bytes")) << r;
    EXPECT_EQ("", client->ReadLine(2000)) << "that connection is closed";
    EXPECT_TRUE(Ok(other.Request("status"))) << "the server keeps serving";
    AdminClient fresh(cluster.admin);
    EXPECT_TRUE(Ok(fresh.Request("status")));
}

TEST_F(AdminTest, AHostThatCannotScheduleGetsAnErrorReplyNotAHang) {
    host().refuse_schedule = true;
    std::string r = Request("status");
    EXPECT_NE(std::string::npos, Error(r).find("schedule_main failed: -11")) << r;
    host().refuse_schedule = false;
    EXPECT_TRUE(Ok(Request("status")));
}

TEST_F(AdminTest, ShutdownReleasesARequestWaitingForTheMainThread) {
    client->Send("status\n");
    // Do not pump: the admin thread is now waiting for the main thread. Shutdown must not hang on it.
    usleep(100 * 1000);
    host().Shutdown();
    std::string r = client->ReadLine(3000);
    EXPECT_NE(std::string::npos, Error(r).find("shutting down")) << "reply: '" << r << "'";
    host().Pump();  // a bottom half queued before shutdown runs now and must do nothing harmful
}

}  // namespace
