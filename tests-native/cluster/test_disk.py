"""Disks in syncvm end to end (issue 15 item 3): a replicated VM with a writable virtio-blk disk.

Each replica gets its own copy of one ext4 image, listed in drives= of -object plover; the guest mounts it and
appends a line to a file with a sync after each (plover.work=append), so both replicas write their disks between
syncs, at their own pace (their disks diverge until the sync). Checked: syncs complete and carry disk blocks, some
of them divergent; at a sync point both replicas' RAM, devices and every 4 KiB block of the disk are identical
(the same check as e2e.Replication's, with the drive hashed block by block); redis still serves; both QEMUs exit
cleanly on SIGTERM.

Run by ctest (e2e.Disk) from `./build.sh test`, as root, with the environment `./build.sh env` prints.
"""
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
import plover_cluster as pc  # noqa: E402


class DiskReplication(unittest.TestCase):
    def test_a_guest_writing_its_disk_is_identical_on_both_replicas_at_a_sync_point(self):
        work = pc.work_dir("disk")
        ok = False
        try:
            with pc.Cluster(work, disk=True, guest_args="plover.disk=vda plover.work=append") as cluster:   # started
                primary, backup = cluster.nodes[1], cluster.nodes[2]
                # (the backup's console shows only what its guest printed after the first sync made it the primary's)
                self.assertIn("PLOVER-GUEST disk /dev/vda on /data", primary.serial(), "the guest did not mount its disk")
                time.sleep(10)   # syncs while both guests append
                syncs = checks.sync_log(primary)
                with_disk = [s for s in syncs if s["diskUnion"] > 0]
                divergent = sum(s["diskDivergent"] for s in syncs)
                print(f"{len(syncs)} syncs, {len(with_disk)} with dirty disk blocks, {sum(s['diskUnion'] for s in syncs)} "
                      f"blocks in their unions, {divergent} divergent (sent)")
                self.assertGreater(len(with_disk), 5, "the guests' disk writes did not reach the syncs")
                self.assertGreater(divergent, 0, "no disk block ever diverged: the test does not exercise the transfer")
                for attempt in range(3):
                    # the RTC's save writes the host's time into its clock registers: the backup's re-save for the
                    # check may fall a second later than the primary's (checks.rtc_clock_only accepts only that)
                    rtc = []
                    epoch, diffs = checks.compare_memory(cluster, rtc_clock_differs=rtc.append)
                    print(f"sync point e{epoch}: {'identical RAM, devices and disk' if not diffs else diffs}"
                          f"{''.join(f' (accepted: {r})' for r in rtc)}")
                    self.assertEqual([], diffs)
                names = [b["name"] for b in primary.admin("verify-result")["result"]["blocks"]]
                self.assertIn("drive:data0", names, "the sync-point check did not hash the drive")
                r = cluster.client("redis-cli", "-h", pc.GUEST_IP, "PING")
                self.assertIn("PONG", r)
                # QEMU ends cleanly with a replicated drive (its dirty bitmap released before the drive is closed;
                # the block layer aborted on it before)
                for n in (backup, primary):
                    n.kill(signal.SIGTERM)
                    with open(n.stderr_path, errors="replace") as f:
                        tail = f.read()[-2000:]
                    self.assertEqual(0, n.proc.returncode, f"node {n.id} on SIGTERM ended with {n.proc.returncode}: {tail}")
                    self.assertNotIn("Assertion", tail, f"node {n.id}")
                ok = True
        finally:
            pc.remove_work_dir(work, failed=not ok)


if __name__ == "__main__":
    unittest.main()
