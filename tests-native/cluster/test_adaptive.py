"""Adaptive mode end to end (sync.mode "adaptive"): real QEMU under TCG, a client writing without pause, and a guest
whose memory diverges on purpose when told to (tests-native/guest/init, plover.work=diverge: each replica overwrites
4 MiB of a tmpfs file with random bytes at an offset drawn from its own clock and counters, again and again, so
the two guests write different pages and replication sends about twice what checkpointing would).

The cluster starts replicating; told to diverge, it must switch to checkpointing (a committed SYNC entry that
names the mode: both replicas agree, the backup's VM stops, inputs go straight into the primary); while the
divergence lasts, its trials of replication must fail and fall back; told to stop, it must go back to replication
and stay. Both replicas keep the same inputs in the same order at every sync, their RAM is identical at a sync
point in each mode, and every acknowledged write is read back at the end. It prints the bytes per sync of each
phase (what the sync link carried, and what a checkpoint would have sent) as the README's figures.

Run by ctest (e2e.Adaptive) from `./build.sh test`, as root, with the environment `./build.sh env` prints.
PLOVER_KEEP_TEST_DIRS=1 keeps the logs.
"""
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
import plover_cluster as pc  # noqa: E402
from test_checkpoint import vm_running  # noqa: E402
from test_failover import ClusterUnderLoad  # noqa: E402

CONTROL_PORT = 7000
PAGE_WIRE = 4096 + 8   # a checkpoint sends every dirty page with its page number


def checkpoint_bytes(s):
    """What checkpointing would have sent for this sync: the primary's dirty pages and its whole device state."""
    return s["localDirty"] * PAGE_WIRE + s["deviceStateSavedBytes"]


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else 0.0


class AdaptiveMode(ClusterUnderLoad):
    NAME = "adaptive"
    # switchAbove 0.9: the backup runs only between its apply and the next cut (a few ms of each ~20 ms epoch on
    # these 2 shared cores) and every sync resets its guest to the primary's, so it writes far fewer pages of its own
    # than the primary: replication costs about what checkpointing would here, a little more or less
    ADAPTIVE = {"window": 8, "switchAbove": 0.9, "probeEvery": 64, "maxProbeEvery": 256}
    CLUSTER_ARGS = {"sync": {"mode": "adaptive", "adaptive": ADAPTIVE}, "guest_args": "plover.work=diverge"}
    marks = {}
    rows = []

    def wait(self, what, predicate, timeout=240):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if predicate():
                    return
            except (OSError, ConnectionError, ValueError, KeyError, RuntimeError):
                pass
            time.sleep(0.25)
        self.fail(f"timed out waiting until {what}")

    def replica(self, i):
        return self.cluster.nodes[i].admin("replica")

    def diverge(self, on):
        """Tells the guest (through the replicated network, like any client) to start or stop diverging."""
        word = "on" if on else "off"
        code = ("import socket,sys\n"
                f"s=socket.create_connection(('{pc.GUEST_IP}',{CONTROL_PORT}),timeout=60)\n"
                f"s.sendall(b'{word}\\n')\n"
                "data=b''\n"
                "while not data.endswith(b'\\n'):\n"
                "    chunk=s.recv(100)\n"
                "    if not chunk: break\n"
                "    data+=chunk\n"
                "sys.stdout.write(data.decode())\n")
        deadline = time.time() + 120
        while True:
            try:
                answer = self.cluster.client("python3", "-c", code, timeout=90).strip()
                self.assertEqual(f"ok {word}", answer)
                return
            except (RuntimeError, AssertionError):
                if time.time() > deadline:
                    raise
                time.sleep(1)

    def syncs_between(self, start_epoch, end_epoch=None):
        return [s for s in checks.sync_log(self.cluster.nodes[1])
                if s["epoch"] > start_epoch and (end_epoch is None or s["epoch"] <= end_epoch) and not s["fullSync"]]

    def last_epoch(self):
        return self.replica(1)["lastSyncEpoch"]

    def figures(self, phase, group):
        """One phase's bytes per sync (kept now: the node keeps only its last 4096 syncs, a few minutes here)."""
        row = {"phase": phase, "syncs": len(group), "wireBytesPerSync": round(mean(s["wire"]["total"] for s in group)),
               "checkpointBytesPerSync": round(mean(checkpoint_bytes(s) for s in group)),
               "unionPages": round(mean(s["union"] for s in group), 1),
               "divergentPages": round(mean(s["divergent"] for s in group), 1)}
        self.__class__.rows.append(row)
        return row

    def replicating_for(self, syncs, since=0):
        """Both replicas replicate, and so did the primary's last `syncs` syncs after epoch `since` (none switched)."""
        if self.replica(1)["mode"] != "replicate" or self.replica(2)["mode"] != "replicate":
            return False
        tail = self.syncs_between(since)[-syncs:]
        return len(tail) == syncs and not any(s["checkpoint"] or s["nextCheckpoint"] for s in tail)

    def test_1_replicates_while_the_guests_agree(self):
        self.wait("protected", lambda: self.cluster.status()[0] == 0)
        self.assertTrue(self.replica(1)["adaptive"])
        # The guest's boot goes on after the first (full) sync, and the two boots diverge: the policy may
        # checkpoint for a while then. Once the guest only serves redis, replication pays and the cluster stays.
        self.wait("the cluster replicates for good", lambda: self.replicating_for(60), timeout=300)
        booting = self.replica(1)["modeSwitches"]
        self.report.append(f"adaptive: {booting} mode switches while the guest booted")
        self.assertTrue(vm_running(self.cluster.nodes[2]), "the backup's VM does not run while replicating")
        self.__class__.marks["on"] = self.last_epoch()
        self.__class__.marks["switchesBefore"] = booting
        self.figures("agreeing, replicating", self.syncs_between(0, self.marks["on"])[-200:])

    def test_2_divergence_switches_to_checkpointing(self):
        self.diverge(True)
        self.wait("the cluster checkpoints", lambda: self.replica(1)["mode"] == "checkpoint" and self.replica(2)["mode"] == "checkpoint")
        self.assertGreaterEqual(self.replica(1)["modeSwitchesToCheckpoint"], 1)
        # Let it run: trials of replication come every probeEvery checkpoints and must fall back while this lasts.
        # Meanwhile QEMU's own run state of the backup: while checkpointing its VM stays stopped (a replicating
        # backup stops only for each sync, some milliseconds).
        qmp = pc.Qmp(self.cluster.nodes[2].qmp_path)
        longest = run = 0
        try:
            deadline = time.time() + 45
            while time.time() < deadline:
                run = 0 if qmp("query-status")["return"]["running"] else run + 1
                longest = max(longest, run)
                time.sleep(0.05)
        finally:
            qmp.close()
        self.report.append(f"adaptive: the backup's VM stood still for up to {longest} QMP samples in a row (50 ms apart) while diverging")
        self.assertGreaterEqual(longest, 10, "the backup's VM never stayed stopped for half a second while checkpointing")
        epoch, diffs = checks.compare_memory(self.cluster)
        # RAM must be identical. Of the devices, the RTC's section may differ while checkpointing: the backup's VM
        # stood still (its virtual clock with it) and re-saves the loaded RTC against its own clock (seen here; not
        # a difference the next load leaves behind, since every checkpoint loads the primary's whole state).
        rtc = [d for d in diffs if d == "1 of 35 device state section(s) differ: ['mc146818rtc']"
               or d.endswith("device state section(s) differ: ['mc146818rtc']")]
        if rtc:
            self.report.append(f"adaptive: at sync e{epoch} (checkpointing) {rtc[0]}")
        self.assertEqual([], [d for d in diffs if d not in rtc], f"RAM or devices differ at sync e{epoch} while diverging")
        p = self.replica(1)
        self.assertGreaterEqual(p["modeSwitches"] - self.marks["switchesBefore"], 3,
                                "no trial of replication (and fall back) while diverging")
        self.__class__.marks["off"] = self.last_epoch()
        syncs = self.syncs_between(self.marks["on"], self.marks["off"])
        checkpoints = [s for s in syncs if s["checkpoint"]]
        replicated = [s for s in syncs if not s["checkpoint"]]
        self.figures("diverging, replicating (trials)", replicated)
        self.figures("diverging, checkpointing", checkpoints)
        self.assertGreater(len(replicated), 0)
        self.assertGreater(mean(s["wire"]["total"] for s in replicated), self.ADAPTIVE["switchAbove"] * mean(checkpoint_bytes(s) for s in replicated),
                           "while diverging, replication did not cost more than switchAbove x checkpointing")
        self.assertGreater(len(checkpoints), 10, "few checkpoints while diverging")
        for s in checkpoints:   # a checkpoint sends every page the primary dirtied, hashes nothing
            self.assertEqual(0, s["wire"]["hashes"], s)
            self.assertEqual(s["union"], s["divergent"], s)
            if s["remoteDirty"] == 0:
                self.assertEqual(s["localDirty"], s["union"], s)
        # the backup's own bitmap is left out (its VM did not run), but after a switch whose sync did not complete
        self.assertGreater(sum(s["remoteDirty"] == 0 for s in checkpoints), 0.9 * len(checkpoints))

    def test_3_back_to_replication_when_the_guests_agree_again(self):
        self.diverge(False)
        switched = self.replica(1)["modeSwitches"]

        # 60 replicated syncs in a row since: a trial's window paid and it stayed
        self.wait("the cluster replicates again, for good", lambda: self.replicating_for(60, self.marks["off"]), timeout=300)
        self.assertGreaterEqual(self.replica(1)["modeSwitches"], switched)
        self.assertTrue(vm_running(self.cluster.nodes[2]), "the backup's VM does not run after the switch back")
        epoch, diffs = checks.compare_memory(self.cluster)
        self.assertEqual([], diffs, f"RAM differs at sync e{epoch} after the switch back")
        self.__class__.marks["end"] = self.last_epoch()
        after = [s for s in self.syncs_between(self.marks["off"], self.marks["end"]) if not s["checkpoint"]][-60:]
        self.figures("agreeing again, replicating", after)
        self.assertLess(mean(s["wire"]["total"] for s in after), mean(checkpoint_bytes(s) for s in after),
                        "after the divergence, replication costs more than checkpointing would")

    def test_4_same_inputs_in_the_same_order_and_the_figures(self):
        compared, bad = checks.compare_input_order(self.cluster.nodes[1], self.cluster.nodes[2])
        self.assertGreater(compared, 50)
        self.assertEqual([], bad[:5])
        for r in self.rows:
            self.report.append(f"adaptive: {r['phase']:32s} {r['syncs']:5d} syncs  {r['wireBytesPerSync']:>10,} B/sync on the sync link  "
                               f"(a checkpoint: {r['checkpointBytesPerSync']:>10,})  union {r['unionPages']}  divergent {r['divergentPages']}")
        self.report.append("adaptive: " + json.dumps(self.rows))
        p = self.replica(1)
        self.report.append(f"adaptive: mode switches on the primary: {p['modeSwitches']} ({p['modeSwitchesToCheckpoint']} to checkpointing)")
        self.assertEqual(4, len(self.rows), self.rows)

    def test_5_every_acknowledged_write_survived(self):
        acked = self.verify_every_acknowledged_write()
        print(f"adaptive mode: {acked} acknowledged writes, all read back", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
