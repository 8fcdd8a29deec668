"""Checkpoint mode end to end (sync.mode "checkpoint", the Remus baseline): real QEMU under TCG, a client writing
without pause. Checks that inputs reach only the primary (no INPUT entries), that the backup's VM never runs, that
syncs send every page the primary dirtied, and that a kill -9 of the primary is survived by the backup resuming
from its last checkpoint with every acknowledged write intact; the old primary then rejoins as a passive backup.

Run by ctest (e2e.Checkpoint) from `./build.sh test`, as root, with the environment `./build.sh env` prints.
PLOVER_KEEP_TEST_DIRS=1 keeps the logs.
"""
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
import plover_cluster as pc  # noqa: E402
from test_failover import ClusterUnderLoad  # noqa: E402


def vm_running(node, samples=20):
    """Whether QEMU's own run state (QMP query-status, not the library's view) said running in any of samples
    readings 50 ms apart (a primary under load is paused for every sync, so one reading may catch it stopped)."""
    qmp = pc.Qmp(node.qmp_path)
    try:
        for _ in range(samples):
            if qmp("query-status")["return"]["running"]:
                return True
            time.sleep(0.05)
        return False
    finally:
        qmp.close()


class CheckpointMode(ClusterUnderLoad):
    NAME = "checkpoint"
    CLUSTER_ARGS = {"mode": "checkpoint"}

    def wait(self, what, predicate, timeout=180):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if predicate():
                    return
            except (OSError, ConnectionError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        self.fail(f"timed out waiting until {what}")

    def test_1_inputs_go_to_the_primary_only_and_the_backup_never_runs(self):
        primary, backup = self.cluster.nodes[1], self.cluster.nodes[2]
        time.sleep(3)
        p, b = primary.admin("replica"), backup.admin("replica")
        self.assertEqual("checkpoint", p["mode"])
        self.assertEqual("checkpoint", b["mode"])
        self.assertGreater(p["framesPassed"], 100)
        self.assertEqual(0, p["entriesProposed"], "checkpoint mode proposes no INPUT entries")
        self.assertEqual(0, b["inputsInjected"])
        self.assertFalse(vm_running(backup), "the checkpoint backup's VM runs")
        self.assertTrue(vm_running(primary))
        syncs = [s for s in checks.sync_log(primary) if s["epoch"] > 1][-20:]
        self.assertGreater(len(syncs), 5)
        for s in syncs:   # every page the primary dirtied travels, none hashed, the backup adds none
            self.assertEqual(0, s["remoteDirty"], s)
            self.assertEqual(s["localDirty"], s["union"], s)
            self.assertEqual(s["union"], s["divergent"], s)
            self.assertEqual(0, s["wire"]["hashes"], s)

    def test_2_kill_the_primary_the_backup_resumes_from_its_checkpoint(self):
        old, new = self.cluster.nodes[1], self.cluster.nodes[2]
        t0 = int(time.time() * 1e6)
        old.kill(signal.SIGKILL)
        self.wait("node 2 is primary", lambda: new.admin.call("replica").get("role") == "primary")
        self.assertIsNotNone(self.load.wait_acks_after(t0), "no acknowledged write after the failover")
        self.assertTrue(vm_running(new), "the promoted backup's VM does not run")
        # the old primary comes back with its command line: a passive backup again, synced, its VM stopped
        self.cluster.start_node(old.id)
        self.wait("the cluster is protected again", lambda: self.cluster.status()[0] == 0)
        self.assertEqual("backup", old.admin("replica")["role"])
        self.assertFalse(vm_running(old), "the rejoined checkpoint backup's VM runs")

    def test_3_every_acknowledged_write_survived(self):
        acked = self.verify_every_acknowledged_write()
        print(f"checkpoint mode: {acked} acknowledged writes, all read back after the failover", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
