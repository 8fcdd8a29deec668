// Replicated drives (issue 15 item 2) with the real patched QEMU under -accel qtest: the drives listed in drives=
// of -object plover get a dirty bitmap in QEMU's block layer, and the library sees exactly the blocks written
// (here by HMP qemu-io through the guest device's BlockBackend), reads them, and writes blocks that are not
// marked dirty (a backup's apply is not the guest's write).
#include <gtest/gtest.h>

#include <set>

#include "qemu_harness.h"

using namespace harness;

namespace {

constexpr uint64_t kGranularity = 4096;
constexpr uint64_t kDisk0Size = (1 << 20) + 512;  // a short last block
constexpr uint64_t kDisk1Size = 256 << 10;

std::set<uint64_t> dirty_blocks(Admin &admin, int drive) {
    json r = admin.ok("drive-dirty " + std::to_string(drive) + " list");
    std::set<uint64_t> got;
    for (auto &b : r["blocks"]) got.insert(b.get<uint64_t>());
    EXPECT_EQ(r["dirtyBlocks"].get<uint64_t>(), got.size()) << r.dump();
    EXPECT_FALSE(r["truncated"].get<bool>());
    return got;
}

// HMP qemu-io on the device's BlockBackend (virtio-blk-pci's is its inner virtio-blk device's): the same path a guest's virtio-blk write takes into the block layer.
std::string qemu_io(Qmp &qmp, const std::string &device, const std::string &command) {
    std::string out = qmp.execute("human-monitor-command",
                                  {{"command-line", "qemu-io -d /machine/peripheral/" + device +
                                                    "/virtio-backend \"" + command + "\""}})
                          .get<std::string>();
    EXPECT_EQ(out.find("rror"), std::string::npos) << command << ": " << out;
    EXPECT_EQ(out.find("failed"), std::string::npos) << command << ": " << out;
    return out;
}

std::string hex_of(uint8_t byte, size_t n) {
    static const char digits[] = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; i++) s += {digits[byte >> 4], digits[byte & 15]};
    return s;
}

// QEMU under qtest (no guest) with -object plover in probe mode listing `drives`, plus the drive options given;
// connected: qtest (it starts QEMU), the library's admin socket and QMP.
struct QtestQemu {
    explicit QtestQemu(TempDir &dir) : qemu(dir.path) {}
    void start(TempDir &dir, const std::string &drives, const std::vector<std::string> &drive_args) {
        std::string admin_path = dir / "admin.sock", qmp_path = dir / "qmp.sock", qtest_path = dir / "qtest.sock";
        std::string config = write_cluster_config(dir, admin_path);
        std::vector<std::string> args = {
            "-M", "pc", "-m", "64M", "-accel", "qtest", "-display", "none", "-nodefaults", "-S",
            "-qtest", "unix:" + qtest_path + ",server=on,wait=off", "-qmp", "unix:" + qmp_path + ",server=on,wait=off",
            "-object", "plover,id=ft0,lib=" + env("PLOVER_LIB") + ",role=primary,config=" + config + ",node=1,drives=" +
                           drives};
        args.insert(args.end(), drive_args.begin(), drive_args.end());
        auto fw = QemuProcess::firmware_args();
        args.insert(args.end(), fw.begin(), fw.end());
        qemu.start(args);
        qt.connect_listening(qtest_path);
        admin.connect(admin_path);
        qmp.connect(qmp_path);
    }
    QemuProcess qemu;
    Qtest qt;
    Admin admin;
    Qmp qmp;
};

TEST(QemuDrives, TheLibrarySeesExactlyTheBlocksWrittenAndReadsAndWritesThem) {
    TempDir dir;
    write_file(dir / "d0.img", std::string(kDisk0Size, '\0'));
    write_file(dir / "d1.img", std::string(kDisk1Size, '\0'));
    write_file(dir / "ro.img", std::string(64 << 10, '\0'));
    // data0 by its -drive id, disk1 by its node name (-blockdev); a read-only drive beside them is not listed
    QtestQemu q(dir);
    q.start(dir, "data0:disk1",
            {"-drive", "file=" + dir / "d0.img" + ",format=raw,if=none,id=data0", "-device",
             "virtio-blk-pci,drive=data0,id=vd0", "-blockdev",
             "driver=file,filename=" + dir / "d1.img" + ",node-name=disk1", "-device",
             "virtio-blk-pci,drive=disk1,id=vd1", "-drive",
             "file=" + dir / "ro.img" + ",format=raw,if=none,id=ro0,readonly=on", "-device",
             "virtio-blk-pci,drive=ro0,id=vro0"});
    Admin &admin = q.admin;
    Qmp &qmp = q.qmp;

    json drives = admin.ok("drives")["drives"];
    ASSERT_EQ(drives.size(), 2u) << drives.dump();
    EXPECT_EQ(drives[0]["name"], "data0");
    EXPECT_EQ(drives[0]["device"], "/machine/peripheral/vd0/virtio-backend");
    EXPECT_EQ(drives[0]["size"].get<uint64_t>(), kDisk0Size);
    EXPECT_EQ(drives[0]["granularity"].get<uint64_t>(), kGranularity);
    EXPECT_EQ(drives[0]["blocks"].get<uint64_t>(), (kDisk0Size + kGranularity - 1) / kGranularity);
    EXPECT_EQ(drives[1]["name"], "disk1");
    EXPECT_EQ(drives[1]["size"].get<uint64_t>(), kDisk1Size);

    // whatever happened before (firmware probing) is taken and forgotten
    admin.ok("drive-dirty 0");
    admin.ok("drive-dirty 1");
    EXPECT_EQ(dirty_blocks(admin, 0), std::set<uint64_t>{});

    // writes: a sector in block 0, two whole blocks (2, 3), 8 bytes across blocks 4 and 5, the short last block
    qemu_io(qmp, "vd0", "write -P 0xab 0 512");
    qemu_io(qmp, "vd0", "write -P 0xcd 8192 8192");
    qemu_io(qmp, "vd0", "write -P 0x11 20476 8");
    qemu_io(qmp, "vd0", "write -P 0x22 " + std::to_string(kDisk0Size - 512) + " 512");
    qemu_io(qmp, "vd1", "write -P 0x33 65536 4096");
    EXPECT_EQ(dirty_blocks(admin, 0), (std::set<uint64_t>{0, 2, 3, 4, 5, kDisk0Size / kGranularity}));
    EXPECT_EQ(dirty_blocks(admin, 1), (std::set<uint64_t>{16}));
    // taken means cleared
    EXPECT_EQ(dirty_blocks(admin, 0), std::set<uint64_t>{});
    EXPECT_EQ(dirty_blocks(admin, 1), std::set<uint64_t>{});

    // reads see what was written
    EXPECT_EQ(admin.ok("drive-read 0 8192 16")["hex"], hex_of(0xcd, 16));
    EXPECT_EQ(admin.ok("drive-read 0 20476 8")["hex"], hex_of(0x11, 8));
    EXPECT_EQ(admin.ok("drive-read 0 " + std::to_string(kDisk0Size - 4) + " 4")["hex"], hex_of(0x22, 4));
    EXPECT_EQ(admin.ok("drive-read 1 65536 4")["hex"], hex_of(0x33, 4));
    EXPECT_FALSE(admin.call("drive-read 0 " + std::to_string(kDisk0Size - 4) + " 8").value("ok", true))
        << "a read past the end is refused";
    EXPECT_FALSE(admin.call("drive-read 2 0 8").value("ok", true)) << "the read-only drive is not replicated";

    // the library's write lands, and is not the guest's: no dirty block
    EXPECT_EQ(admin.ok("drive-write 0 40960 " + hex_of(0xef, kGranularity))["rc"].get<int>(), 0);
    EXPECT_EQ(admin.ok("drive-write 1 0 " + hex_of(0x44, 2 * kGranularity))["rc"].get<int>(), 0);
    EXPECT_EQ(dirty_blocks(admin, 0), std::set<uint64_t>{});
    EXPECT_EQ(dirty_blocks(admin, 1), std::set<uint64_t>{});
    EXPECT_EQ(admin.ok("drive-read 0 40960 4")["hex"], hex_of(0xef, 4));
    std::string check = qemu_io(qmp, "vd0", "read -P 0xef 40960 4096");
    EXPECT_EQ(check.find("Pattern verification failed"), std::string::npos) << check;
    check = qemu_io(qmp, "vd1", "read -P 0x44 0 8192");
    EXPECT_EQ(check.find("Pattern verification failed"), std::string::npos) << check;
    // and the guest's writes after it are tracked again
    qemu_io(qmp, "vd0", "write -P 0x55 40960 4096");
    EXPECT_EQ(dirty_blocks(admin, 0), std::set<uint64_t>{10});

    // the image files hold the bytes (raw): the library wrote through to them
    std::string d1 = read_file(dir / "d1.img");
    EXPECT_TRUE(d1.substr(0, 8192) == std::string(8192, '\x44'));
    EXPECT_TRUE(d1.substr(65536, 4096) == std::string(4096, '\x33'));
}

// QEMU's exit closes every drive, and the block layer aborts on a drive that still has an anonymous dirty bitmap
// (block.c, bdrv_close: QLIST_EMPTY(&bs->dirty_bitmaps)): Plover releases its bitmaps first. Both ways an operator
// ends QEMU: QMP quit and SIGTERM (what libvirt and the harness send).
TEST(QemuDrives, QemuWithAReplicatedDriveExitsCleanlyOnQuitAndOnSigterm) {
    for (std::string how : {"quit", "SIGTERM"}) {
        SCOPED_TRACE(how);
        TempDir dir;
        write_file(dir / "d0.img", std::string(kDisk1Size, '\0'));
        QtestQemu q(dir);
        q.start(dir, "data0",
                {"-drive", "file=" + dir / "d0.img" + ",format=raw,if=none,id=data0", "-device",
                 "virtio-blk-pci,drive=data0,id=vd0"});
        Admin &admin = q.admin;
        Qmp &qmp = q.qmp;
        QemuProcess &qemu = q.qemu;
        ASSERT_EQ(admin.ok("drives")["drives"].size(), 1u);
        qemu_io(qmp, "vd0", "write -P 0xab 4096 4096");  // a dirty block left in the bitmap at exit
        if (how == "quit") {
            try {
                qmp.execute("quit");
            } catch (const std::exception &) {  // QEMU may close the monitor before its reply arrives
            }
        } else {
            qemu.signal(SIGTERM);
        }
        int status = qemu.wait(30s);
        EXPECT_EQ(status, 0) << qemu.stderr_text();
        EXPECT_EQ(qemu.stderr_text().find("Assertion"), std::string::npos) << qemu.stderr_text();
        // after the release the drive is not used again: the file holds the guest's write
        EXPECT_TRUE(read_file(dir / "d0.img").substr(4096, 4096) == std::string(4096, '\xab'));
    }
}

// Each drive's image file is named at start (the library keeps its torn mark and generation beside it); a drive
// that is not a local file (here QEMU's null-co) cannot carry them, and the start says so.
TEST(QemuDrives, EachDrivesImageIsNamedAndADriveWithoutALocalFileIsWarnedAbout) {
    TempDir dir;
    write_file(dir / "d0.img", std::string(kDisk1Size, '\0'));
    QtestQemu q(dir);
    q.start(dir, "data0:n0",
            {"-drive", "file=" + dir / "d0.img" + ",format=raw,if=none,id=data0", "-device",
             "virtio-blk-pci,drive=data0,id=vd0", "-blockdev", "driver=null-co,node-name=n0,size=1048576", "-device",
             "virtio-blk-pci,drive=n0,id=vd1"});
    ASSERT_EQ(q.admin.ok("drives")["drives"].size(), 2u);
    std::string err = q.qemu.stderr_text();
    EXPECT_NE(err.find("image " + dir / "d0.img" + " (its torn mark and generation are kept beside it)"), std::string::npos) << err;
    EXPECT_NE(err.find("replicated drive 'n0' is not a local file"), std::string::npos) << err;
}

}  // namespace

// ---------------------------------------------------------------- a booted guest writing its own disk

// The guest mounts an ext4 disk and appends a line to a file with a sync after each (the disk pattern of an
// append-only file with fsync after every write); the library takes the drive's dirty blocks every ~22 ms (the
// sync interval of the replicated redis under load here) with the VM stopped, as a sync does. The blocks the guest
// writes show up, and what they would cost at coarser granularities is printed (a 64 KiB block is dirty when any of
// its 4 KiB blocks is): the measurement behind the 4 KiB granularity (README, "Disks").
TEST(QemuDiskGuest, AGuestsSyncedAppendsShowAsDirtyBlocks) {
    TempDir dir;
    std::string admin_path = dir / "admin.sock";
    std::string config = write_cluster_config(dir, admin_path);
    constexpr uint64_t kSize = 256ull << 20;
    std::string image = dir / "data.img";
    std::string mkfs = "truncate -s " + std::to_string(kSize) + " '" + image + "' && mkfs.ext4 -q -F '" + image + "'";
    ASSERT_EQ(system(mkfs.c_str()), 0) << mkfs;
    std::vector<std::string> args = {
        "-M", "pc", "-m", "256M", "-smp", "2", "-accel", "tcg,thread=multi", "-display", "none", "-nodefaults",
        "-kernel", env("PLOVER_KERNEL"), "-initrd", env("PLOVER_INITRD"), "-append",
        "console=ttyS0 quiet plover.disk=vda plover.work=append", "-serial", "file:" + dir / "serial.log",
        "-object", "plover,id=ft0,lib=" + env("PLOVER_LIB") + ",role=primary,config=" + config + ",node=1,drives=data0",
        "-drive", "file=" + image + ",format=raw,if=none,id=data0", "-device", "virtio-blk-pci,drive=data0,id=vd0"};
    auto fw = QemuProcess::firmware_args();
    args.insert(args.end(), fw.begin(), fw.end());
    QemuProcess qemu(dir.path);
    qemu.start(args);
    Admin admin;
    admin.connect(admin_path);
    ASSERT_TRUE(qemu.wait_for_output(dir / "serial.log", "PLOVER-GUEST-READY", 180s))
        << read_file(dir / "serial.log") << qemu.stderr_text();
    ASSERT_NE(read_file(dir / "serial.log").find("PLOVER-GUEST disk /dev/vda on /data"), std::string::npos)
        << read_file(dir / "serial.log");
    std::this_thread::sleep_for(2s);  // the workload's first appends (and the mount's own writes) settle
    json drive = admin.ok("drives")["drives"][0];
    ASSERT_EQ(drive["size"].get<uint64_t>(), kSize);
    admin.ok("drive-dirty 0");

    const uint64_t granularities[] = {4096, 16384, 65536, 1 << 20};
    constexpr int kTakes = 200;
    uint64_t blocks[4] = {}, nonempty = 0;
    std::set<uint64_t> ever;
    for (int t = 0; t < kTakes; t++) {
        std::this_thread::sleep_for(22ms);
        json r = admin.ok("drive-dirty 0 list");
        ASSERT_TRUE(r["wasRunning"].get<bool>());
        std::set<uint64_t> coarse[4];
        for (auto &b : r["blocks"]) {
            uint64_t block = b.get<uint64_t>();
            ASSERT_LT(block, kSize / 4096);
            ever.insert(block);
            for (int g = 0; g < 4; g++) coarse[g].insert(block * 4096 / granularities[g]);
        }
        for (int g = 0; g < 4; g++) blocks[g] += coarse[g].size();
        nonempty += !r["blocks"].empty();
    }
    EXPECT_GT(nonempty, uint64_t(kTakes / 4)) << "the guest's synced appends hardly showed as dirty blocks";
    printf("[ disk    ] %d takes ~22 ms apart, %llu with dirty blocks, %zu distinct 4 KiB blocks touched\n", kTakes,
           (unsigned long long)nonempty, ever.size());
    printf("[ disk    ] granularity  dirty blocks/take  bytes read+hashed/take  bitmap of this 256 MiB disk  per GiB\n");
    for (int g = 0; g < 4; g++)
        printf("[ disk    ] %8llu KiB  %17.1f  %19.1f KiB  %23.1f KiB  %6.1f KiB\n",
               (unsigned long long)(granularities[g] >> 10), double(blocks[g]) / kTakes,
               double(blocks[g]) * granularities[g] / kTakes / 1024, double(kSize / granularities[g]) / 8 / 1024,
               double((1ull << 30) / granularities[g]) / 8 / 1024);
}

// The open virtio-blk bug of README "Disks" (a backup's guest saw "virtio_blk virtio1: req.0:id 0 is not a head!"
// at its first disk requests): a backup loads the primary's device state into its live devices. A primary whose
// guest has just reset the virtio-blk device (its driver's probe) has queues without a ring; virtio_load recomputes
// a queue's used index from guest RAM only for a queue with a ring, so the backup's device kept its own used index,
// and the first request after the guest set the queue up again was pushed at that stale index. Here the same in
// one QEMU: the device state of a never-run machine (every queue reset) is kept, the guest boots and reads its disk,
// then the kept state is loaded into the live device: its queues must be reset ones, not the guest's indices.
TEST(QemuVirtioLoad, AQueueWithoutARingLoadsAsAResetQueue) {
    TempDir dir;
    std::string admin_path = dir / "admin.sock", qmp_path = dir / "qmp.sock";
    std::string config = write_cluster_config(dir, admin_path);
    std::string image = dir / "data.img";
    std::string mkfs = "truncate -s 64M '" + image + "' && mkfs.ext4 -q -F '" + image + "'";
    ASSERT_EQ(system(mkfs.c_str()), 0) << mkfs;
    std::vector<std::string> args = {
        "-M", "pc", "-m", "256M", "-smp", "2", "-accel", "tcg,thread=multi", "-display", "none", "-nodefaults", "-S",
        "-kernel", env("PLOVER_KERNEL"), "-initrd", env("PLOVER_INITRD"), "-append", "console=ttyS0 quiet plover.disk=vda",
        "-serial", "file:" + dir / "serial.log", "-qmp", "unix:" + qmp_path + ",server=on,wait=off",
        "-object", "plover,id=ft0,lib=" + env("PLOVER_LIB") + ",role=primary,config=" + config + ",node=1",
        "-drive", "file=" + image + ",format=raw,if=none,id=data0,readonly=on", "-device", "virtio-blk-pci,drive=data0,id=vd0"};
    auto fw = QemuProcess::firmware_args();
    args.insert(args.end(), fw.begin(), fw.end());
    QemuProcess qemu(dir.path);
    qemu.start(args);
    Admin admin;
    admin.connect(admin_path);
    Qmp qmp;
    qmp.connect(qmp_path);
    auto queue = [&](int q) {
        return qmp.execute("x-query-virtio-queue-status", {{"path", "/machine/peripheral/vd0/virtio-backend"}, {"queue", q}});
    };
    for (int q = 0; q < 2; q++) ASSERT_EQ(queue(q)["vring-desc"].get<uint64_t>(), 0u) << queue(q).dump();
    admin.ok("devstate-save");   // -S: never run, every queue reset

    qmp.execute("cont");
    // The guest's kernel has read its disk (SeaBIOS's one request on queue 0 came before its driver's reset).
    ASSERT_TRUE(qemu.wait_for_output(dir / "serial.log", "PLOVER-GUEST-READY", 180s))
        << read_file(dir / "serial.log") << qemu.stderr_text();
    uint64_t used = queue(0)["used-idx"].get<uint64_t>() + queue(1)["used-idx"].get<uint64_t>();
    ASSERT_GT(used, 0u) << queue(0).dump() << queue(1).dump();
    qmp.execute("stop");
    admin.ok("devstate-load");
    for (int q = 0; q < 2; q++) {
        json s = queue(q);
        EXPECT_EQ(s["vring-desc"].get<uint64_t>(), 0u) << s.dump();
        EXPECT_EQ(s["last-avail-idx"].get<uint64_t>(), 0u) << s.dump();
        EXPECT_EQ(s["used-idx"].get<uint64_t>(), 0u) << "queue " << q << " kept the device's own used index: " << s.dump();
        EXPECT_EQ(s["shadow-avail-idx"].get<uint64_t>(), 0u) << s.dump();
        EXPECT_EQ(s["inuse"].get<uint64_t>(), 0u) << s.dump();
    }
}
