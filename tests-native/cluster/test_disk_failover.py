"""Failover with a replicated disk (issue 15 item 5): redis keeps its data on the disk, the primary dies, and the
promoted backup's disk is consistent with its memory.

The guest runs redis with an append-only file on its replicated ext4 disk, fsynced before every reply
(tests-native/guest/init, plover.redis=aof plover.disk=vda), restarted by the guest whenever it exits. A client in
its own namespace writes without pause (test_failover's Load: acknowledged writes recorded). Three rounds on one
cluster:

1. the primary kills itself (SIGKILL, test-only fault injection fault-at-sync DiskBatch) in the middle of a sync,
   after sending a batch of divergent disk blocks the backup has staged but not applied;
2. the old primary rejoins as the backup (a full sync that compares every block of its stale disk), then the
   primary kills itself with the whole sync sent but not acknowledged (BeforeApply): the backup applies RAM and
   disk blocks and is promoted with them;
3. the dead one rejoins likewise, then the primary is killed with kill -9 at a random moment under load.

After each: the backup is promoted and every acknowledged write (of every round) is read back from it; then redis in
the promoted guest is shut down (SHUTDOWN NOSAVE) and restarted by the guest after dropping its page cache, so it
loads its data from the append-only file on the promoted node's disk: every acknowledged write is read back again
and the key count is the one before the restart. That shows the disk the promoted node was left with agrees with its
memory (a torn or stale disk loses or corrupts keys, or redis refuses its AOF). At the end no QEMU log has an
assertion failure and the last primary exits cleanly on SIGTERM.

Run by ctest (e2e.DiskFailover) from `./build.sh test`, as root, with the environment `./build.sh env` prints.
PLOVER_KEEP_TEST_DIRS=1 keeps the logs; PLOVER_DISK_FAILOVER_SEED fixes round 3's kill moment.
"""
import os
import random
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
import plover_cluster as pc  # noqa: E402
from test_failover import Load  # noqa: E402

AOF_LOADED = "DB loaded from append only file"   # redis' log line (on the guest's console) after loading its AOF
# What a torn or stale disk shows on the guest's console: the kernel's errors (still printed with `quiet`; a
# virtio ring whose used entry names a request the driver does not have outstanding is "broken" from then on, and
# every request fails with an I/O error), redis loading a cut AOF (aof-load-truncated lets it go on) or refusing one
DISK_TROUBLE = ("EXT4-fs error", "I/O error", "is not a head", "short read while loading the AOF", "AOF loaded anyway",
                "Bad file format reading the append only file", "Unrecoverable error reading the append only file")


class DiskFailover(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = pc.work_dir("disk-failover")
        cls.t_start = time.time()
        cls.cluster = pc.Cluster(cls.work, disk=True, guest_args="plover.disk=vda plover.redis=aof",
                                 timeouts={**pc.TCG_TIMEOUTS, "startupMs": 60000},
                                 env={**os.environ, "PLOVER_FAULT_INJECTION": "1"})   # fault-at-sync, round 1
        cls.report, cls.loads = [], []
        try:
            cls.cluster.start()
        except Exception:
            cls.cluster.stop()
            raise
        cls.report.append(f"cluster serving {time.time() - cls.t_start:.1f} s after the start")

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()
        for line in cls.report:
            print(line, file=sys.stderr)
        print(f"total {time.time() - cls.t_start:.1f} s", file=sys.stderr)
        pc.remove_work_dir(cls.work)

    # ------------------------------------------------------------------ helpers
    def redis(self, *args, timeout=10):
        return self.cluster.client("timeout", str(timeout), "redis-cli", "-h", pc.GUEST_IP, *args,
                                   timeout=timeout + 5, check=False).strip()

    def info(self, section):
        return dict(line.split(":", 1) for line in self.redis("INFO", section).splitlines() if ":" in line)

    def wait_protected(self, timeout=180):
        deadline, last = time.time() + timeout, None
        while time.time() < deadline:
            last = self.cluster.status()
            if last[0] == 0:
                return
            time.sleep(0.5)
        self.fail(f"the cluster did not get protected: {last}")

    def start_load(self, prefix):
        load = Load(self.cluster, self.work, prefix=prefix)
        self.loads.append(load)
        self.assertIsNotNone(load.wait_acks_after(0, count=50, timeout=60), "the load never got going")
        return load

    def verify_all(self, when):
        """Every write any load got acknowledged is readable; returns how many."""
        total = 0
        for load in self.loads:
            r = self.cluster.redis_check("verify-log", load.out)
            self.assertEqual(0, r["missingCount"] + r["wrongCount"], f"{when}: {r}")
            total += r["checked"]
        return total

    def assert_no_assertion_failures(self):
        for n in self.cluster.vm_nodes():
            for name in sorted(os.listdir(self.work)):
                if name.startswith(f"node{n.id}.") and name.endswith(".stderr"):
                    with open(os.path.join(self.work, name), errors="replace") as f:
                        text = f.read()
                    self.assertNotIn("Assertion", text, name)
                    self.assertNotIn("assertion failed", text, name)

    def promoted_and_checked(self, old, new, t0, load, fault, console_at_fault, since="the kill"):
        """After the fault on old: new is promoted and serves every acknowledged write, from memory and then from
        its disk (redis restarted in its guest). console_at_fault: the length of new's console log at the fault."""
        new.wait_role("primary")
        promoted = time.time()
        first = load.wait_acks_after(int(promoted * 1e6), count=3, timeout=60)
        self.assertIsNotNone(first, f"{fault}: no acknowledged write after the promotion")
        time.sleep(1)
        load.stop()
        acked = self.verify_all(f"{fault}, on the promoted node {new.id}")
        keys = int(self.redis("DBSIZE"))
        self.assertGreaterEqual(keys, acked)

        # redis restarted on the promoted node: its data now comes from the AOF on this node's disk
        self.assertEqual("appendonly\nyes", self.redis("CONFIG", "GET", "appendonly"))
        self.assertEqual("appendfsync\nalways", self.redis("CONFIG", "GET", "appendfsync"))
        self.assertEqual("dir\n/data/redis", self.redis("CONFIG", "GET", "dir"))
        before = self.info("server")["run_id"]
        loaded_before = new.serial().count(AOF_LOADED)
        t_restart = time.time()
        self.redis("SHUTDOWN", "NOSAVE")
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.redis("PING", timeout=3) == "PONG" and self.info("server").get("run_id") != before:
                break
            time.sleep(0.2)
        else:
            self.fail(f"redis did not come back in the promoted guest; its console:\n{new.serial()[-3000:]}")
        restart_s = time.time() - t_restart
        persistence = self.info("persistence")
        self.assertEqual("1", persistence["aof_enabled"], persistence)
        self.assertEqual("ok", persistence["aof_last_write_status"], persistence)
        self.assertGreater(int(persistence["aof_current_size"]), 0, persistence)
        deadline = time.time() + 10   # the console line may trail the answer a little
        while new.serial().count(AOF_LOADED) <= loaded_before and time.time() < deadline:
            time.sleep(0.2)
        self.assertGreater(new.serial().count(AOF_LOADED), loaded_before,
                           f"the restarted redis did not load its append-only file:\n{new.serial()[-3000:]}")
        self.assertEqual(keys, int(self.redis("DBSIZE")), "the restarted redis has another key count")
        # what the guest printed from the fault on (a promoted guest's disk trouble); what its console showed before,
        # while it was the backup, is reported: a backup's guest that starts its disk while a sync lands can see a
        # broken virtio ring until the next sync resets it to the primary's state (an open bug, see README Disks)
        console = new.serial()
        after = console[console_at_fault:]
        self.assertEqual([], [t for t in DISK_TROUBLE if t in after], f"node {new.id}'s guest since the fault:\n{after[-3000:]}")
        before_fault = [t for t in DISK_TROUBLE if t in console[:console_at_fault]]
        if before_fault:
            self.report.append(f"node {new.id}'s guest showed {before_fault} on its console while it was the backup "
                               f"(before the fault): {[l for l in console[:console_at_fault].splitlines() if any(t in l for t in before_fault)][:3]}")
        self.assertEqual(acked, self.verify_all(f"{fault}, after redis reloaded its AOF on node {new.id}"))
        self.report.append(f"{fault}: node {new.id} promoted {promoted - t0:.1f} s after {since}, {acked} acknowledged "
                           f"writes read back; redis restarted from its AOF in {restart_s:.1f} s "
                           f"(AOF {int(persistence['aof_current_size']) / 1024:.0f} KiB), the same {keys} keys, all read back")
        self.assert_no_assertion_failures()
        return acked

    def kill_itself_at(self, primary, step):
        """The primary kills itself (SIGKILL) the next time its sync engine reaches step."""
        primary.admin(f"fault-at-sync {step}")
        deadline = time.time() + 60
        while time.time() < deadline and primary.alive():
            time.sleep(0.05)
        self.assertFalse(primary.alive(), f"the primary never reached sync step {step}")
        primary.kill()   # closes its admin connection
        self.assertIn(f"kills itself at sync step {step}", primary.stderr())

    def rejoin(self, n):
        """The dead node restarts with its command line and (stale) disk image: it joins with a full sync."""
        t_join = time.time()
        self.cluster.start_node(n.id)
        n.wait_role("backup", timeout=180)
        self.wait_protected()
        joins = [s for s in checks.sync_log(n) if s["fullSync"]]
        self.assertTrue(joins, "the rejoining node has no full sync in its log")
        join = joins[0]
        # its disk missed every write since its death: the full sync compared every block and sent those
        self.assertEqual(os.path.getsize(self.cluster.disk_path_of(n)) // 4096, join["diskUnion"], join)  # every block
        self.assertGreater(join["diskDivergent"], 0, "the full sync found the stale disk identical")
        self.report.append(f"node {n.id} rejoined and protects {time.time() - t_join:.1f} s after its start; its "
                           f"full sync compared {join['diskUnion']} disk blocks and sent {join['diskDivergent']} "
                           f"({join['divergent']} of {join['union']} pages)")

    def current_primary_and_backup(self):
        a, b = self.cluster.nodes[1], self.cluster.nodes[2]
        return (a, b) if a.replica_role() == "primary" else (b, a)

    # ------------------------------------------------------------------ rounds, in order
    def test_1_primary_dies_while_sending_disk_blocks(self):
        primary, backup = self.cluster.nodes[1], self.cluster.nodes[2]
        self.assertIn("PLOVER-GUEST disk /dev/vda on /data", primary.serial(), "the guest did not mount its disk")
        load = self.start_load("d1")
        self.wait_protected()
        t0, console_at_fault = time.time(), len(backup.serial())
        # after its first batch of divergent disk blocks of a sync: the backup has staged them but not applied
        # them, and goes on from its own last state
        self.kill_itself_at(primary, "DiskBatch")
        syncs = checks.sync_log(backup)
        self.report.append(f"before the first fault: {len(syncs)} syncs completed, "
                           f"{sum(1 for s in syncs if s['diskUnion'] > 0)} with dirty disk blocks, "
                           f"{sum(s['diskDivergent'] for s in syncs)} divergent blocks sent")
        self.promoted_and_checked(primary, backup, t0, load, "primary killed at sync step DiskBatch", console_at_fault,
                                  "arming")

    def test_2_primary_dies_with_the_sync_sent_but_not_acknowledged(self):
        old = self.cluster.nodes[1]
        self.rejoin(old)
        primary, backup = self.current_primary_and_backup()
        self.assertIs(old, backup)
        load = self.start_load("d2")
        t0, console_at_fault = time.time(), len(backup.serial())
        # everything sent (RAM, disk blocks, devices): the backup applies it all, then is promoted with it
        self.kill_itself_at(primary, "BeforeApply")
        self.promoted_and_checked(primary, backup, t0, load, "primary killed at sync step BeforeApply", console_at_fault,
                                  "arming")

    def test_3_kill_the_primary_at_a_random_moment(self):
        old = self.cluster.nodes[2]
        self.rejoin(old)
        primary, backup = self.current_primary_and_backup()
        self.assertIs(old, backup)
        load = self.start_load("d3")
        seed = int(os.environ.get("PLOVER_DISK_FAILOVER_SEED", str(random.randrange(1 << 30))))
        delay = random.Random(seed).uniform(0.5, 5.0)
        time.sleep(delay)
        t0, console_at_fault = time.time(), len(backup.serial())
        primary.kill(signal.SIGKILL)
        self.promoted_and_checked(primary, backup, t0, load,
                                  f"kill -9 of the primary {delay:.2f} s into the load (seed {seed})", console_at_fault)
        # the last primary ends cleanly (its dirty bitmap released before its drive is closed)
        backup.kill(signal.SIGTERM)
        self.assertEqual(0, backup.proc.returncode, f"node {backup.id} on SIGTERM: {backup.stderr()[-2000:]}")
        self.assert_no_assertion_failures()


if __name__ == "__main__":
    unittest.main(verbosity=2)
