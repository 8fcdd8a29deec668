"""Replication with "transport": "ucx" end to end: the same cluster as e2e.Replication's (real QEMU under TCG, redis
in the guest, a client writing without pause), its consensus frames and sync link over UCX (UCX_TLS=tcp: these
machines have no RDMA device; on one with RDMA, UCX would use verbs), with page puts into the backup's staging buffer.
Checks that every node connected over UCX, that syncs keep completing with pages put, that a kill -9 of the primary is survived, and that every acknowledged write is read back.

Run by ctest (e2e.Ucx) from `./build.sh test`, as root, with the environment `./build.sh env` prints.
PLOVER_KEEP_TEST_DIRS=1 keeps the logs.
"""
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
from test_failover import ClusterUnderLoad  # noqa: E402


class OverUcx(ClusterUnderLoad):
    NAME = "ucx"
    # pagePuts: divergent pages and sub-blocks go by ucp_put into the backup's staging buffer (emulated over TCP here)
    CLUSTER_ARGS = {"ucx": {"pagePuts": True, "env": {"UCX_TLS": "tcp"}}}

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

    def test_1_every_link_is_over_ucx_and_syncs_complete(self):
        primary, backup, witness = (self.cluster.nodes[i] for i in (1, 2, 3))
        time.sleep(3)
        for node, peers in ((primary, (2, 3)), (backup, (1, 3)), (witness, (1, 2))):
            log = node.stderr()
            for peer in peers:
                self.assertIn(f"connected to node {peer} over UCX", log, f"node {node.id} to {peer}")
            self.assertNotIn("ucx: ", log, "the UCX worker complained")
            self.assertNotIn("UCX  ERROR", log)
        self.assertIn("sync link 1: connected to node 2 over UCX", primary.stderr())
        syncs = [s for s in checks.sync_log(primary) if s["epoch"] > 1]
        self.assertGreater(len(syncs), 10, "too few syncs over UCX")
        put = sum(s.get("putBytes", 0) for s in syncs)
        sent = sum(s.get("pageDataBytes", 0) for s in syncs)
        self.assertGreater(put, 0, "no page went by put")
        backup_checked = sum(s.get("putBytes", 0) for s in checks.sync_log(backup) if s["epoch"] > 1)
        print(f"page data {sent} B, {put} B of it put one-sided in {sum(s.get('puts', 0) for s in syncs)} puts; "
              f"the backup checked {backup_checked} B", file=sys.stderr)
        self.assertEqual(0, self.cluster.status()[0], "the cluster is not protected")

    def test_2_kill_the_primary_the_backup_takes_over_and_no_write_is_lost(self):
        old, new = self.cluster.nodes[1], self.cluster.nodes[2]
        t0 = int(time.time() * 1e6)
        old.kill(signal.SIGKILL)
        self.wait("node 2 is primary", lambda: new.admin.call("replica").get("role") == "primary")
        self.assertIsNotNone(self.load.wait_acks_after(t0), "no acknowledged write after the failover")
        self.verify_every_acknowledged_write()


if __name__ == "__main__":
    unittest.main()
