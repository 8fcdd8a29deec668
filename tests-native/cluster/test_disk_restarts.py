"""Restarts with replicated disks (issue 15): a torn image says so, and a full outage never lets a stale image win.

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
   image and removes the mark, and at a sync point RAM, devices and every disk block are identical;
5. the primary killed: the backup is promoted and its images' generation (IMAGE.plover-generation) goes one past its
   old primary's; all nodes down, then a fresh cluster with the old primary configured as primary: it refuses at once
   (the other replica's images are newer: starting there would lose what the promoted node served);
6. a fresh cluster with the promoted node as primary starts and serves; the other joins as its backup and takes its
   generation once synced; meanwhile (step 5) the fresh backup never took over after its primary refused;
7. all nodes down, then a fresh cluster whose primary kills itself inside its first sync (PLOVER_FAULT_AT_START):
   the fresh backup, whose images are not known to be the primary's before that sync, stays a backup and never
   boots them (five seconds, a dozen election timeouts).

Run by ctest (e2e.DiskRestarts) from `./build.sh test`, as root, with the environment `./build.sh env` prints.
"""
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
import plover_cluster as pc  # noqa: E402

SUFFIX = ".plover-torn"
GENERATION = ".plover-generation"


def generation(cluster, node):
    """(number, served as primary) from the record beside node's image; (0, False) without one."""
    try:
        with open(cluster.disk_path_of(node) + GENERATION) as f:
            _, number, role = f.read().split()
        return int(number), role == "primary"
    except FileNotFoundError:
        return 0, False


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


def fresh_start(cluster, primary_id, primary_env=None):
    """Every node started again (after all were down) with primary_id as the configured primary."""
    set_primary(cluster, primary_id)
    for node_id in (3, 2, 1):
        cluster.start_node(node_id, env=primary_env if node_id == primary_id else None)


class DiskRestarts(unittest.TestCase):
    def test_a_torn_or_stale_image_never_founds_a_cluster(self):
        work = pc.work_dir("disk-restarts")
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

            self.assertIn(f"image {cluster.disk_path_of(primary)} (its torn mark and generation are kept beside it)",
                          primary.stderr())

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
            t0 = time.time()
            fresh_start(cluster, backup.id)
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
            fresh_start(cluster, primary.id)
            cluster.wait_service()
            self.assertIn("marked torn; it enters as a backup", backup.stderr())
            wait_until("the repaired backup's mark to go", 120, lambda: not os.path.exists(backup_mark))
            wait_until("query-plover on the backup: a sync, not torn", 60,
                       lambda: (lambda s: "last-sync" in s and s["disk-torn"] is False)(backup.qmp("query-plover")["return"]))
            epoch, diffs = checks.compare_memory(cluster, rtc_clock_differs=lambda _: None)
            print(f"sync point e{epoch} after the repair: {'identical RAM, devices and disk' if not diffs else diffs}")
            self.assertEqual([], diffs)
            g1, g2 = generation(cluster, primary), generation(cluster, backup)
            print(f"generations: node 1 {g1}, node 2 {g2}")
            self.assertTrue(g1[1] and g2 == (g1[0], False), "the synced backup did not take its primary's generation")

            # 5. a failover, then a full outage: the old primary's images are older and it must not found the cluster
            primary.kill()
            backup.wait_role("primary", timeout=60)
            # recorded by the promotion's actions, before it releases output (its role shows a moment earlier)
            g2 = wait_until("the promoted node's generation", 10, lambda: (lambda g: g if g[1] else None)(generation(cluster, backup)))
            print(f"promoted node 2's generation: {g2}")
            self.assertEqual((g1[0] + 1, True), g2)
            for n in (backup, witness):
                n.kill()
            fresh_start(cluster, primary.id)
            wait_until("the stale node's QEMU to refuse to start", 120, lambda: not primary.alive())
            err = primary.stderr()
            refusal = [l for l in err.splitlines() if "images are newer" in l]
            print(f"stale primary refused: {refusal[-1] if refusal else err[-2000:]}")
            self.assertTrue(refusal, f"the stale node did not say why it stopped:\n{err[-3000:]}")
            self.assertNotIn("guest started", err)
            self.assertEqual(g1, generation(cluster, primary))
            for n in (backup, witness):
                n.kill()
            # node 2, a fresh backup with drives, never took over before a first sync (its images are not known to
            # be its primary's; once, before that rule, it was elected after node 1's refusal and served on)
            self.assertEqual(g2, generation(cluster, backup), "the fresh backup took over before its first sync")
            self.assertNotIn("PROMOTED", backup.stderr())

            # 6. the promoted node as primary: it serves, the other is its backup
            fresh_start(cluster, backup.id)
            cluster.wait_service()
            wait_until("node 1 to take node 2's generation", 120,
                       lambda: generation(cluster, primary) == (g2[0] + 1, False))
            self.assertEqual((g2[0] + 1, True), generation(cluster, backup))
            _, report, _ = cluster.status()
            shown = {n["id"]: (n.get("diskGeneration"), n.get("diskGenerationPrimary")) for n in report.get("nodes", [])}
            print(f"plover status --json: {shown}")
            self.assertEqual({1: (g2[0] + 1, False), 2: (g2[0] + 1, True)}, {k: shown[k] for k in (1, 2)})

            # 7. all down; a fresh cluster whose primary (node 2) dies inside its first sync: node 1, a fresh backup whose
            # images are not yet known to be node 2's, must not take over (it would boot them), however long it waits
            for n in (primary, backup, witness):
                n.kill()
            g1, g2 = generation(cluster, primary), generation(cluster, backup)
            fresh_start(cluster, backup.id, primary_env={"PLOVER_FAULT_AT_START": "Stopped"})
            wait_until("the fresh primary to kill itself in its first sync", 120, lambda: not backup.alive())
            self.assertIn("kills itself at sync step Stopped", backup.stderr())
            time.sleep(5)   # a dozen election timeouts (200-400 ms here)
            err = primary.stderr()
            print(f"node 1 five seconds after its primary died in the first sync: alive {primary.alive()}, role "
                  f"{primary.replica_role()}, generation {generation(cluster, primary)}")
            self.assertTrue(primary.alive())
            self.assertIn("does not take over before its first sync", err)
            self.assertNotIn("PROMOTED", err)
            self.assertEqual("backup", primary.replica_role())
            self.assertEqual(g1, generation(cluster, primary))
            ok = True
        finally:
            cluster.stop()
            pc.remove_work_dir(work, failed=not ok)


if __name__ == "__main__":
    unittest.main()
