"""End to end (issue 14 item 2): a protected Redis under client load while strangers hold idle connections open and
send garbage to both ports (consensus and sync link) of every node. Stated bounds: the acknowledged writes per
second during the flood stay at >= 50% of the rate just before it, syncs keep completing (the sync link holds), the
cluster stays protected, and every acknowledged write is read back afterwards."""
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_failover import ClusterUnderLoad, HERE  # noqa: E402

WINDOW_S = 6


def now_us():
    return int(time.time() * 1e6)


class Flood(ClusterUnderLoad):
    NAME = "flood"

    def rate(self, seconds):
        t0 = now_us()
        time.sleep(seconds)
        t1 = now_us()
        return sum(1 for t in self.load.acks_us() if t0 <= t < t1) / seconds

    def syncs(self):
        return self.cluster.nodes[1].admin("replica")["syncsCompleted"]

    def test_a_flood_of_strangers_leaves_the_service_running(self):
        time.sleep(2)
        before = self.rate(WINDOW_S)
        syncs_before = self.syncs()
        stop = os.path.join(self.work, "stop-flood")
        endpoints = [f"{n.ip}:{port}" for n in self.cluster.nodes.values() for port in (7400, 7401)]
        flood = self.cluster.client_popen("python3", os.path.join(HERE, "flood.py"), stop, "50", *endpoints,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(2)
            during = self.rate(WINDOW_S)
            syncs_during = self.syncs() - syncs_before
            protected = self.cluster.nodes[1].admin("replica").get("protected")
        finally:
            open(stop, "w").close()
            out, err = flood.communicate(timeout=60)
        self.report.append(f"flood: {before:.0f} acknowledged writes/s before, {during:.0f}/s during "
                           f"({during / max(before, 1):.2f}x); {syncs_during} syncs completed meanwhile; flooder: "
                           f"{out.strip()} {err.strip()[-300:]}")
        self.assertGreater(before, 10, "no load before the flood")
        self.assertGreaterEqual(during, 0.5 * before, self.report[-1])
        self.assertGreater(syncs_during, 0, "no sync completed during the flood")
        self.assertNotEqual(False, protected, "the primary lost its protection during the flood")
        self.verify_every_acknowledged_write()


if __name__ == "__main__":
    unittest.main(verbosity=2)
