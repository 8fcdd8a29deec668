// End-to-end tests of the foundation: the real patched QEMU loads the real libplover.so.
//   - QEMU refuses each bad option with a message naming the problem;
//   - the library attaches and sees the RAM blocks that -m asks for;
//   - dirty sync reports exactly the pages written (qtest memwrite, no CPU running);
//   - a booted TCG guest dirties pages, survives a device-state save/load, answers a frame the library injects,
//     and its reply is held by filter-plover until the library releases its epoch.
#include <gtest/gtest.h>

#include <set>

#include "qemu_harness.h"

using namespace harness;

namespace {

constexpr uint8_t kGuestMac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
constexpr uint8_t kPeerMac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc};
constexpr uint32_t kGuestIp = 0x0a000202;  // 10.0.2.2
constexpr uint32_t kPeerIp = 0x0a000201;   // 10.0.2.1

std::string plover_object(const std::string &config, const std::string &role = "primary",
                          const std::string &node = "1") {
    return "plover,id=ft0,lib=" + env("PLOVER_LIB") + ",role=" + role + ",config=" + config + ",node=" + node;
}

// ---------------------------------------------------------------- refusals

struct BadOption {
    const char *name;
    std::vector<std::string> args;  // with {CONFIG}, {LIB}, {BADCONFIG}, {OTHERCONFIG}, {DISK} placeholders
    const char *message;            // expected in QEMU's stderr
};

class Refusal : public ::testing::TestWithParam<BadOption> {};

TEST_P(Refusal, QemuRefusesToStartWithAMessage) {
    TempDir dir;
    std::string config = write_cluster_config(dir, dir / "admin.sock");
    write_file(dir / "bad.json", "{ \"cluster\": \"x\", ");
    write_file(dir / "disk.img", std::string(1 << 20, '\0'));
    write_file(dir / "disk2.img", std::string(1 << 20, '\0'));
    write_file(dir / "noprimary.json", read_file(config).replace(read_file(config).find("\"primary\""), 9, "\"backup\""));
    std::vector<std::string> args = {"-M", "none", "-S", "-display", "none", "-nodefaults"};
    for (std::string a : GetParam().args) {
        auto sub = [&](const std::string &key, const std::string &value) {
            for (size_t p; (p = a.find(key)) != std::string::npos;) a.replace(p, key.size(), value);
        };
        sub("{CONFIG}", config);
        sub("{LIB}", env("PLOVER_LIB"));
        sub("{BADCONFIG}", dir / "bad.json");
        sub("{NOPRIMARY}", dir / "noprimary.json");
        sub("{ABI2LIB}", PLOVER_ABI2_LIBRARY);
        sub("{DISK}", dir / "disk.img");
        sub("{DISK2}", dir / "disk2.img");
        args.push_back(a);
    }
    auto fw = QemuProcess::firmware_args();   // cases that build a pc machine need its BIOS
    args.insert(args.end(), fw.begin(), fw.end());
    QemuProcess qemu(dir.path);
    qemu.start(args);
    int status = qemu.wait(60s);
    std::string err = qemu.stderr_text();
    EXPECT_NE(status, 0) << qemu.command_line();
    EXPECT_NE(status, INT32_MIN) << "QEMU did not exit: " << qemu.command_line();
    EXPECT_NE(err.find(GetParam().message), std::string::npos)
        << "expected \"" << GetParam().message << "\" in:\n" << err << "\ncommand: " << qemu.command_line();
    EXPECT_EQ(err.find("Segmentation"), std::string::npos) << err;
}

const BadOption kBadOptions[] = {
    {"missing_library", {"-object", "plover,id=ft0,lib=/nonexistent/libplover.so,role=primary,config={CONFIG},node=1"},
     "cannot read library '/nonexistent/libplover.so'"},
    {"foreign_library", {"-object", "plover,id=ft0,lib=/lib/x86_64-linux-gnu/libz.so.1,role=primary,config={CONFIG},node=1"},
     "is not a Plover library"},
    {"abi_mismatch", {"-object", "plover,id=ft0,lib={ABI2LIB},role=primary,config={CONFIG},node=1"},
     "speaks ABI 2.0 but this QEMU speaks 1."},
    {"unknown_role", {"-object", "plover,id=ft0,lib={LIB},role=boss,config={CONFIG},node=1"},
     "role 'boss' is not one of primary, backup"},
    {"missing_lib_property", {"-object", "plover,id=ft0,role=primary,config={CONFIG},node=1"}, "'lib' is missing"},
    {"unreadable_config", {"-object", "plover,id=ft0,lib={LIB},role=primary,config=/nonexistent.json,node=1"},
     "cannot read config file '/nonexistent.json'"},
    {"malformed_config", {"-object", "plover,id=ft0,lib={LIB},role=primary,config={BADCONFIG},node=1"}, "bad.json"},
    {"config_without_primary", {"-object", "plover,id=ft0,lib={LIB},role=primary,config={NOPRIMARY},node=1"}, "primary"},
    {"bad_node_id", {"-object", "plover,id=ft0,lib={LIB},role=primary,config={CONFIG},node=abc"},
     "node 'abc' is not a positive node id"},
    {"node_not_in_config", {"-object", "plover,id=ft0,lib={LIB},role=primary,config={CONFIG},node=9"}, "9"},
    {"role_differs_from_config", {"-object", "plover,id=ft0,lib={LIB},role=backup,config={CONFIG},node=1"}, "primary"},
    {"witness_node_in_qemu", {"-object", "plover,id=ft0,lib={LIB},role=primary,config={CONFIG},node=3"}, "witness"},
    {"bad_isa", {"-object", "plover,id=ft0,lib={LIB},role=primary,config={CONFIG},node=1,isa=v9"},
     "isa 'v9' is not one of auto, v4, v3, v2"},
    {"filter_without_plover", {"-netdev", "user,id=n0", "-object", "filter-plover,id=f0,netdev=n0,ft=nothing"},
     "'nothing' is not the id of a plover object"},
    {"filter_one_direction",
     {"-object", "plover,id=ft0,lib={LIB},role=primary,config={CONFIG},node=1", "-netdev", "user,id=n0", "-object",
      "filter-plover,id=f0,netdev=n0,ft=ft0,queue=rx"},
     "queue must be 'all'"},
    {"writable_drive",
     {"-M", "pc", "-object", "plover,id=ft0,lib={LIB},role=primary,config={CONFIG},node=1", "-drive",
      "file={DISK},format=raw,if=none,id=data0", "-device", "virtio-blk-pci,drive=data0,id=vd0"},
     "drive 'data0' (device '/machine/peripheral/vd0/virtio-backend') is writable and not replicated: list it in "
     "drives= of -object plover"},
    {"writable_blockdev",
     {"-M", "pc", "-object", "plover,id=ft0,lib={LIB},role=primary,config={CONFIG},node=1", "-blockdev",
      "driver=file,filename={DISK},node-name=disk1", "-device", "virtio-blk-pci,drive=disk1,id=vd1"},
     "(device '/machine/peripheral/vd1/virtio-backend') is writable and not replicated"},
    {"writable_drive_not_listed",
     {"-M", "pc", "-object", "plover,id=ft0,lib={LIB},role=primary,config={CONFIG},node=1,drives=data0", "-drive",
      "file={DISK},format=raw,if=none,id=data0", "-device", "virtio-blk-pci,drive=data0,id=vd0", "-drive",
      "file={DISK2},format=raw,if=none,id=data1", "-device", "virtio-blk-pci,drive=data1,id=vd1"},
     "drive 'data1' (device '/machine/peripheral/vd1/virtio-backend') is writable and not replicated"},
    {"drives_unknown_name",
     {"-M", "pc", "-object", "plover,id=ft0,lib={LIB},role=primary,config={CONFIG},node=1,drives=nosuch"},
     "drives: 'nosuch' is neither a drive id nor the node of a drive attached to a device"},
    {"drives_read_only",
     {"-M", "pc", "-object", "plover,id=ft0,lib={LIB},role=primary,config={CONFIG},node=1,drives=ro0", "-drive",
      "file={DISK},format=raw,if=none,id=ro0,readonly=on", "-device", "virtio-blk-pci,drive=ro0,id=vd0"},
     "drives: 'ro0' is read-only"},
    {"drives_twice",
     {"-M", "pc", "-object", "plover,id=ft0,lib={LIB},role=primary,config={CONFIG},node=1,drives=data0:data0",
      "-drive", "file={DISK},format=raw,if=none,id=data0", "-device", "virtio-blk-pci,drive=data0,id=vd0"},
     "drives: 'data0' is listed twice"},
    {"filter_created_off",
     {"-object", "plover,id=ft0,lib={LIB},role=primary,config={CONFIG},node=1", "-netdev", "user,id=n0", "-object",
      "filter-plover,id=f0,netdev=n0,ft=ft0,status=off"},
     "filter-plover: cannot be switched off"},
};

INSTANTIATE_TEST_SUITE_P(BadOptions, Refusal, ::testing::ValuesIn(kBadOptions),
                         [](const auto &info) { return std::string(info.param.name); });

// ---------------------------------------------------------------- qtest: exact dirty pages

TEST(QemuQtest, DirtySyncReportsExactlyThePagesWritten) {
    TempDir dir;
    std::string admin_path = dir / "admin.sock", qtest_path = dir / "qtest.sock";
    std::string config = write_cluster_config(dir, admin_path);
    QemuProcess qemu(dir.path);
    // qtest listens (server) on a socket we connect to
    std::vector<std::string> args = {"-M", "pc", "-m", "64M", "-accel", "qtest", "-display", "none", "-nodefaults",
                                     "-S", "-qtest", "unix:" + qtest_path + ",server=on,wait=off",
                                     "-object", plover_object(config)};
    auto fw = QemuProcess::firmware_args();
    args.insert(args.end(), fw.begin(), fw.end());
    qemu.start(args);
    Qtest qt;
    qt.connect_listening(qtest_path);
    Admin admin;
    admin.connect(admin_path);

    json blocks = admin.ok("ramblocks")["blocks"];
    const json *pc_ram = nullptr;
    for (auto &b : blocks)
        if (b["name"] == "pc.ram") pc_ram = &b;
    ASSERT_NE(pc_ram, nullptr) << blocks.dump();
    EXPECT_EQ((*pc_ram)["length"].get<uint64_t>(), 64ull << 20);

    admin.ok("dirty-sync");  // discard anything so far
    json quiet = admin.ok("dirty-sync list");
    for (auto &b : quiet["blocks"]) EXPECT_EQ(b["dirtyPages"].get<uint64_t>(), 0u) << quiet.dump();

    // pc.ram below 3.5 GiB maps guest-physical addresses 1:1 to block offsets
    const uint64_t addrs[] = {0x100000, 0x100ff8, 0x2345678, 0x3fff000, 0x1000ffe /* spans 0x1000000-0x1001000 */};
    std::set<uint64_t> expected;
    for (uint64_t a : addrs) {
        char line[128];
        snprintf(line, sizeof line, "write 0x%llx 4 0xdeadbeef", (unsigned long long)a);
        ASSERT_EQ(qt.command(line), "OK");
        expected.insert(a >> 12);
        expected.insert((a + 3) >> 12);
    }
    json r = admin.ok("dirty-sync list");
    std::set<uint64_t> got;
    for (auto &b : r["blocks"]) {
        if (b["name"] == "pc.ram") {
            for (auto &p : b["pages"]) got.insert(p.get<uint64_t>());
        } else {
            EXPECT_EQ(b["dirtyPages"].get<uint64_t>(), 0u) << "no other block was written: " << b.dump();
        }
    }
    EXPECT_EQ(got, expected);

    // cleared after the sync: a second sync is empty again
    json again = admin.ok("dirty-sync list");
    for (auto &b : again["blocks"]) EXPECT_EQ(b["dirtyPages"].get<uint64_t>(), 0u) << again.dump();
}

// ---------------------------------------------------------------- a booted TCG guest

class QemuGuest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir();
        peer_ = new FramePeer();
        qemu_ = new QemuProcess(dir_->path);
        std::string admin_path = *dir_ / "admin.sock", qmp_path = *dir_ / "qmp.sock";
        std::string config = write_cluster_config(*dir_, admin_path);
        write_file(*dir_ / "ro.img", std::string(1 << 20, '\0'));
        std::vector<std::string> args = {
            "-M", "pc", "-m", "256M", "-smp", "2", "-accel", "tcg,thread=multi", "-display", "none", "-nodefaults",
            "-S", "-kernel", env("PLOVER_KERNEL"), "-initrd", env("PLOVER_INITRD"), "-append",
            "console=ttyS0 quiet plover.ip=10.0.2.2/24 plover.work=dirty", "-serial", "file:" + *dir_ / "serial.log",
            "-qmp", "unix:" + qmp_path + ",server=on,wait=off", "-netdev", peer_->netdev("n0"), "-device",
            "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=", "-object", plover_object(config), "-object",
            "filter-plover,id=pf0,netdev=n0,ft=ft0",
            // a read-only drive is allowed (Plover refuses writable ones: it does not replicate disks)
            "-drive", "file=" + *dir_ / "ro.img" + ",format=raw,if=none,id=ro0,readonly=on", "-device",
            "virtio-blk-pci,drive=ro0,id=vro0"};
        auto fw = QemuProcess::firmware_args();
        args.insert(args.end(), fw.begin(), fw.end());
        qemu_->start(args);
        admin_ = new Admin();
        admin_->connect(admin_path);
        qmp_ = new Qmp();
        qmp_->connect(qmp_path);
        qmp_->execute("cont");
        ready_ = qemu_->wait_for_output(*dir_ / "serial.log", "PLOVER-GUEST-READY", 120s);
    }
    static void TearDownTestSuite() {
        delete admin_;
        delete qmp_;
        delete qemu_;
        delete peer_;
        delete dir_;
    }
    void SetUp() override {
        ASSERT_TRUE(ready_) << "guest did not boot; serial:\n"
                            << read_file(*dir_ / "serial.log") << "\nstderr:\n"
                            << qemu_->stderr_text();
        ASSERT_TRUE(qemu_->running());
    }

    // Send an ARP request to the guest (via the library or via the netdev) and expect the reply to be held
    // until the library releases the epoch that holds it.
    void expect_reply_held_until_release(bool inject) {
        admin_->ok("out-mode 0 hold");
        auto request = arp_request(kPeerMac, kPeerIp, kGuestIp);
        // fromGuestReports counts filter-plover's notices that it holds new output
        uint64_t reports_before = admin_->ok("net-stats")["nics"][0]["fromGuestReports"].get<uint64_t>();
        if (inject) {
            EXPECT_EQ(admin_->ok("inject 0 " + hex(request))["rc"].get<int>(), 0);
        } else {
            peer_->send(request);
        }
        // the guest answers, and the answer is held: nothing reaches the peer
        auto deadline = clock::now() + 30s;
        uint64_t reports = reports_before;
        while (clock::now() < deadline && reports == reports_before) {
            std::this_thread::sleep_for(100ms);
            reports = admin_->ok("net-stats")["nics"][0]["fromGuestReports"].get<uint64_t>();
        }
        ASSERT_GT(reports, reports_before) << "the guest's reply never reached filter-plover";
        auto early = peer_->receive([](auto &f) { return is_arp_reply_to(f, kPeerMac); }, 1500ms);
        EXPECT_TRUE(early.empty()) << "a held frame left before its epoch was released";

        uint64_t epoch = admin_->ok("out-cut 0")["epoch"].get<uint64_t>();
        json rel = admin_->ok("out-release 0 " + std::to_string(epoch));
        EXPECT_GE(rel["released"].get<int64_t>(), 1);
        auto reply = peer_->receive([](auto &f) { return is_arp_reply_to(f, kPeerMac); }, 10s);
        ASSERT_FALSE(reply.empty()) << "no ARP reply after release";
        EXPECT_EQ(0, memcmp(reply.data() + 6, kGuestMac, 6)) << "the reply comes from the guest NIC";
    }

    static TempDir *dir_;
    static FramePeer *peer_;
    static QemuProcess *qemu_;
    static Admin *admin_;
    static Qmp *qmp_;
    static bool ready_;
};

TempDir *QemuGuest::dir_;
FramePeer *QemuGuest::peer_;
QemuProcess *QemuGuest::qemu_;
Admin *QemuGuest::admin_;
Qmp *QemuGuest::qmp_;
bool QemuGuest::ready_;

TEST_F(QemuGuest, LibraryAttachesAndSeesTheRamOfMinusM) {
    json status = admin_->ok("status");
    EXPECT_EQ(status["role"], "primary");
    EXPECT_EQ(status["accel"], "tcg");
    json blocks = admin_->ok("ramblocks")["blocks"];
    bool found = false;
    for (auto &b : blocks) {
        if (b["name"] == "pc.ram") {
            found = true;
            EXPECT_EQ(b["length"].get<uint64_t>(), 256ull << 20);
        }
    }
    EXPECT_TRUE(found) << blocks.dump();
    EXPECT_NE(qemu_->stderr_text().find("plover: loaded"), std::string::npos) << qemu_->stderr_text();
    json nics = admin_->ok("nics")["nics"];
    ASSERT_EQ(nics.size(), 1u) << nics.dump();
    EXPECT_EQ(nics[0]["mac"], "52:54:00:12:34:56");
}

TEST_F(QemuGuest, AReadOnlyDriveIsAllowed) {
    bool found = false;
    for (auto &b : qmp_->execute("query-block")) {
        if (b["device"] == "ro0") {
            found = true;
            EXPECT_TRUE(b["inserted"]["ro"].get<bool>()) << b.dump();
        }
    }
    EXPECT_TRUE(found) << "the read-only drive is missing";
}

TEST_F(QemuGuest, GuestActivityShowsAsDirtyPages) {
    admin_->ok("dirty-sync");
    uint64_t total = 0;
    for (int i = 0; i < 3; i++) {
        std::this_thread::sleep_for(1s);
        json r = admin_->ok("dirty-sync");
        for (auto &b : r["blocks"]) total += b["dirtyPages"].get<uint64_t>();
    }
    // the guest writes 16 MiB of tmpfs every second: thousands of pages
    EXPECT_GT(total, 1000u);
    EXPECT_EQ(qmp_->execute("query-status")["status"], "running");
}

TEST_F(QemuGuest, InjectedFrameReachesGuestAndReplyIsHeldUntilReleased) {
    expect_reply_held_until_release(/*inject=*/true);
}

TEST_F(QemuGuest, FrameFromNetdevPassesAndReplyIsHeldUntilReleased) {
    expect_reply_held_until_release(/*inject=*/false);
}

TEST_F(QemuGuest, StolenFramesNeverReachTheGuest) {
    admin_->ok("out-mode 0 hold");
    admin_->ok("steal 0 on");
    uint64_t stolen = admin_->ok("stolen 0")["count"].get<uint64_t>();
    auto request = arp_request(kPeerMac, kPeerIp, kGuestIp);
    peer_->send(request);
    std::this_thread::sleep_for(2s);
    admin_->ok("steal 0 off");
    json st = admin_->ok("stolen 0");
    EXPECT_EQ(st["count"].get<uint64_t>(), stolen + 1);
    ASSERT_FALSE(st["last"].empty());
    EXPECT_EQ(st["last"].back(), hex(request)) << "the library saw the exact frame";
    // release everything held: the guest never answered, so no reply comes out
    uint64_t epoch = admin_->ok("out-cut 0")["epoch"].get<uint64_t>();
    admin_->ok("out-release 0 " + std::to_string(epoch));
    auto reply = peer_->receive([](auto &f) { return is_arp_reply_to(f, kPeerMac); }, 1500ms);
    EXPECT_TRUE(reply.empty()) << "the guest answered a stolen frame";
}

TEST_F(QemuGuest, DeviceStateRoundTripLeavesTheGuestRunning) {
    json r = admin_->ok("devstate-roundtrip");
    EXPECT_GT(r["bytes"].get<uint64_t>(), 1000u);
    EXPECT_EQ(qmp_->execute("query-status")["status"], "running");
    // and the guest still works: it answers ARP
    expect_reply_held_until_release(/*inject=*/true);
}

// The STOP and RESUME events QEMU sent since the last call, oldest first.
static std::vector<std::string> run_state_events(Qmp &qmp) {
    std::vector<std::string> e;
    for (auto &name : qmp.take_events())
        if (name == "STOP" || name == "RESUME") e.push_back(name);
    return e;
}

// The library stops the VM at every sync's cut (here: the admin commands that stop it around their work); QEMU
// hides those stops from its monitor (patch 0010: no STOP or RESUME event) so that libvirt does not see the domain
// flap to paused. An operator's stop (run by QEMU in probe mode) is reported as always.
TEST_F(QemuGuest, TheLibrarysStopsSendNoRunStateEventsButAnOperatorsStopDoes) {
    run_state_events(*qmp_);
    admin_->ok("devstate-roundtrip");
    admin_->ok("dirty-sync");
    admin_->ok("hash-ram");
    EXPECT_EQ(std::vector<std::string>{}, run_state_events(*qmp_)) << "the library's stops were reported";
    EXPECT_TRUE(admin_->ok("status")["running"].get<bool>()) << "the library resumed the VM";
    EXPECT_EQ(qmp_->execute("query-status")["status"], "running");

    qmp_->execute("stop");
    json st = qmp_->execute("query-status");
    EXPECT_EQ(st["status"], "paused");
    EXPECT_FALSE(st["running"].get<bool>());
    EXPECT_FALSE(admin_->ok("status")["running"].get<bool>());
    qmp_->execute("cont");
    EXPECT_EQ(qmp_->execute("query-status")["status"], "running");
    EXPECT_EQ((std::vector<std::string>{"STOP", "RESUME"}), run_state_events(*qmp_));
}

// A library stop becomes visible once it lasts (patch 0010: 1 s): a deposed primary or a passive backup is really
// stopped, and the monitor must say so; a stop shorter than that (a sync's) stays hidden.
TEST_F(QemuGuest, ALibraryStopPastASecondIsReportedAShortOneIsNot) {
    run_state_events(*qmp_);
    EXPECT_TRUE(admin_->ok("vm-hold 300")["held"].get<bool>());
    EXPECT_EQ(std::vector<std::string>{}, run_state_events(*qmp_)) << "a 0.3 s library stop was reported";
    EXPECT_EQ(qmp_->execute("query-status")["status"], "running");

    EXPECT_TRUE(admin_->ok("vm-hold 2000")["held"].get<bool>());
    EXPECT_EQ((std::vector<std::string>{"STOP", "RESUME"}), run_state_events(*qmp_)) << "a 2 s library stop";
    EXPECT_EQ(qmp_->execute("query-status")["status"], "running");

    // and the next short stop is hidden again
    EXPECT_TRUE(admin_->ok("vm-hold 100")["held"].get<bool>());
    EXPECT_EQ(std::vector<std::string>{}, run_state_events(*qmp_)) << "a short stop after a long one was reported";
}

TEST_F(QemuGuest, TheFilterRefusesToBeSwitchedOffOrDeleted) {
    auto qmp_error = [](const std::string &cmd, const json &args) {
        try {
            qmp_->execute(cmd, args);
        } catch (const std::runtime_error &e) {
            return std::string(e.what());
        }
        return std::string();
    };
    // switched off, QEMU would skip the filter and the guest's output would leave unheld
    std::string off = qmp_error("qom-set", {{"path", "pf0"}, {"property", "status"}, {"value", "off"}});
    EXPECT_NE(off.find("cannot be switched off"), std::string::npos) << "qom-set status off: '" << off << "'";
    EXPECT_EQ(qmp_->execute("qom-get", {{"path", "pf0"}, {"property", "status"}}), "on");
    // deleted, it left a NULL in the NIC table that the next lookup dereferenced
    std::string del = qmp_error("object-del", {{"id", "pf0"}});
    EXPECT_NE(del.find("in use"), std::string::npos) << "object-del: '" << del << "'";
    json nics = admin_->ok("nics")["nics"];
    ASSERT_EQ(nics.size(), 1u) << nics.dump();
    EXPECT_EQ(nics[0]["mac"], "52:54:00:12:34:56");
    // and output is still held until released
    expect_reply_held_until_release(/*inject=*/true);
    EXPECT_TRUE(qemu_->running());
}

TEST_F(QemuGuest, DiscardedOutputNeverLeaves) {
    admin_->ok("out-mode 0 hold");
    peer_->send(arp_request(kPeerMac, kPeerIp, kGuestIp));
    std::this_thread::sleep_for(2s);
    uint64_t epoch = admin_->ok("out-cut 0")["epoch"].get<uint64_t>();
    EXPECT_GE(admin_->ok("out-discard 0 " + std::to_string(epoch))["discarded"].get<int64_t>(), 1);
    admin_->ok("out-release 0 " + std::to_string(epoch));
    auto leaked = peer_->receive([](auto &f) { return is_arp_reply_to(f, kPeerMac); }, 1500ms);
    EXPECT_TRUE(leaked.empty()) << "a discarded frame left";
}

}  // namespace
