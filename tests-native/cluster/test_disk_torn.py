"""A backup that dies while a sync writes its disk leaves a torn image, and the image says so (issue 15 item 3).

The guest appends to a file on its replicated ext4 disk (plover.work=append), so most syncs carry divergent disk
blocks. Checked, on one cluster:

1. query-plover shows the replicated drive in the last sync (last-sync.disk: dirty, union, identical and divergent
   blocks, the disk frames' bytes) and disk-torn false (QEMU patch 0013, ABI 1.4);
2. the backup kills itself (SIGKILL, test-only fault injection fault-at-sync DiskApplying) inside its apply, after
   it marked its image and before it wrote the blocks: the mark (IMAGE.plover-torn, naming the drive) is there after
   the process is gone; the primary's image has none;
3. all nodes down, then a fresh cluster with the torn node configured as primary: its QEMU refuses to start, at once
   and naming the marks (its guest never ran on the torn image);
4. a fresh cluster with the good node as primary: the torn node enters as backup, its first (full) sync repairs the
   image and removes the mark, and at a sync point RAM, devices and every disk block are identical.

Run by ctest (e2e.DiskTorn) from `./build.sh test`, as root, with the environment `./build.sh env` prints.
"""
import json
import os
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
import plover_cluster as pc  # noqa: E402

SUFFIX = ".plover-torn"


def wait_until(what, timeout, pred, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s: {what}")


def set_primary(cluster, node_id):
    """The configured primary becomes node_id, the other replica the backup (config file and QEMU command lines)."""
    for n in cluster.vm_nodes():
        n.role = "primary" if n.id == node_id else "backup"
    with open(cluster.config_path) as f:
        config = json.load(f)
    for entry in config["nodes"]:
        if entry["role"] != "witness":
            entry["role"] = cluster.nodes[entry["id"]].role
    with open(cluster.config_path, "w") as f:
        json.dump(config, f, indent=2)


class TornDisk(unittest.TestCase):
    def test_a_backup_killed_while_writing_its_disk_leaves_a_marked_image_that_never_founds_a_cluster(self):
        work = tempfile.mkdtemp(prefix="plover-e2e-disk-torn.")
        ok = False
        cluster = pc.Cluster(work, disk=True, guest_args="plover.disk=vda plover.work=append",
                             env={**os.environ, "PLOVER_FAULT_INJECTION": "1"})
        try:
            cluster.start()
            primary, backup, witness = cluster.nodes[1], cluster.nodes[2], cluster.nodes[3]
            backup_mark = cluster.disk_path_of(backup) + SUFFIX
            primary_mark = cluster.disk_path_of(primary) + SUFFIX

            # 1. the drive in query-plover
            seen = []

            def a_sync_with_disk_blocks():
                status = primary.qmp("query-plover")["return"]
                seen.append(status)
                disk = status.get("last-sync", {}).get("disk")
                return status if disk and disk["union-blocks"] > 0 else None
            try:
                status = wait_until("a sync with disk blocks in query-plover", 60, a_sync_with_disk_blocks)
            except AssertionError:
                raise AssertionError(f"no sync with disk blocks in query-plover; the last answer: {seen[-1:]}")
            disk = status["last-sync"]["disk"]
            print(f"query-plover on the primary: last-sync.disk {disk}, disk-torn {status['disk-torn']}")
            self.assertEqual({"dirty-blocks", "union-blocks", "identical-blocks", "divergent-blocks", "wire-bytes"}, set(disk))
            self.assertEqual(disk["union-blocks"], disk["identical-blocks"] + disk["divergent-blocks"])
            self.assertGreater(disk["wire-bytes"], 0)
            self.assertIs(False, status["disk-torn"])
            self.assertIs(False, backup.qmp("query-plover")["return"]["disk-torn"])

            # 2. the backup dies inside its apply, its image marked and not yet written
            backup.admin("fault-at-sync DiskApplying")
            wait_until("the backup killed itself in its apply", 60, lambda: not backup.alive())
            self.assertIn("kills itself at sync step DiskApplying", backup.stderr())
            self.assertTrue(os.path.exists(backup_mark), f"no mark beside the backup's image; files: {os.listdir(work)}")
            with open(backup_mark) as f:
                text = f.read()
            print(f"the backup's mark: {text.strip()}")
            self.assertIn("drive 'data0'", text)
            self.assertIn("Plover node 2", text)
            self.assertFalse(os.path.exists(primary_mark), "the primary's image is marked")

            # 3. everything down; a fresh cluster with the torn node as its configured primary is refused
            for n in (primary, witness):
                n.kill()
            set_primary(cluster, backup.id)
            t0 = time.time()
            for node_id in (3, 2, 1):
                cluster.start_node(node_id)
            wait_until("the torn node's QEMU to refuse to start", 120, lambda: not backup.alive())
            refused_after = time.time() - t0
            err = backup.stderr()
            refusal = [l for l in err.splitlines() if "marked torn" in l]
            print(f"refused after {refused_after:.1f} s: {refusal[-1] if refusal else err[-2000:]}")
            self.assertTrue(refusal, f"the torn node did not say why it stopped:\n{err[-3000:]}")
            self.assertNotEqual(0, backup.proc.returncode)
            self.assertNotIn("guest started", err)
            self.assertTrue(os.path.exists(backup_mark))
            for n in (primary, witness):
                n.kill()

            # 4. a fresh cluster with the good image as primary: the torn node is repaired as its backup
            set_primary(cluster, primary.id)
            for node_id in (3, 2, 1):
                cluster.start_node(node_id)
            cluster.wait_service()
            self.assertIn("marked torn; it enters as a backup", backup.stderr())
            wait_until("the repaired backup's mark to go", 120, lambda: not os.path.exists(backup_mark))
            wait_until("query-plover on the backup: a sync, not torn", 60,
                       lambda: (lambda s: "last-sync" in s and s["disk-torn"] is False)(backup.qmp("query-plover")["return"]))
            epoch, diffs = checks.compare_memory(cluster, rtc_clock_differs=lambda _: None)
            print(f"sync point e{epoch} after the repair: {'identical RAM, devices and disk' if not diffs else diffs}")
            self.assertEqual([], diffs)
            ok = True
        finally:
            cluster.stop()
            if ok and not os.environ.get("PLOVER_KEEP_TEST_DIRS"):
                shutil.rmtree(work, ignore_errors=True)
            else:
                print(f"logs kept in {work}")


if __name__ == "__main__":
    unittest.main()
