"""Adaptive mode end to end (sync.mode "adaptive"): real QEMU under TCG, a client writing without pause, and a guest
whose memory diverges on purpose when told to (tests-native/guest/init, plover.work=diverge: a second redis in the
guest overwrites 256 KiB of a 64 MiB string again and again, at an offset and with a stamp from its own clock, so the
two guests write different pages with different bytes).

The cluster starts replicating; told to diverge, it must switch to checkpointing (a committed SYNC entry that
names the mode: both replicas agree, the backup's VM stops, inputs go straight into the primary); while the
divergence lasts, its trials of replication must fail and fall back; told to stop, it must go back to replication
and stay. Both replicas keep the same inputs in the same order at every sync, their RAM is identical at a sync
point in each mode, both name the same mode at every sync, and every acknowledged write is read back at the end.
Then, diverging again and checkpointing, the primary is killed (-9): the backup takes over from its last
checkpoint, in checkpoint mode, and serves every acknowledged write; the old primary rejoins. It prints the bytes
per sync of each phase (what the sync link carried, and what a checkpoint would have sent) as the README's figures.

Run by ctest (e2e.Adaptive) from `./build.sh test`, as root, with the environment `./build.sh env` prints.
PLOVER_KEEP_TEST_DIRS=1 keeps the logs.
"""
import json
import os
import re
import signal
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
    # switchAbove 0.35, between the two states measured here: replication sends about 0.07x of a checkpoint while the
    # guests agree and 0.2-0.25x on average while they diverge on purpose, its windows of 8 syncs that switch about
    # 0.5x (0.5 until 64-byte sub-blocks with 2-byte hashes made replication cheaper: the windows that switched then
    # sat at 0.50-0.53, on the threshold). Not above 1: on these 2 shared cores the backup's
    # guest dirties a quarter to a half of the pages the primary's does per sync (every sync resets it to the
    # primary's), so the union is little larger than the primary's dirt, and replication sends each divergent page's
    # differing sub-blocks where a checkpoint sends it whole (README, adaptive mode).
    ADAPTIVE = {"window": 8, "switchAbove": 0.35, "probeEvery": 128, "maxProbeEvery": 512}   # probeEvery: see the QMP check
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

    def modes_agree(self):
        """Epochs both replicas completed where they named different modes (this sync's or the next's)."""
        p = {s["epoch"]: s for s in checks.sync_log(self.cluster.nodes[1])}
        b = {s["epoch"]: s for s in checks.sync_log(self.cluster.nodes[2])}
        common = sorted(set(p) & set(b))
        return len(common), [e for e in common if (p[e]["checkpoint"], p[e]["nextCheckpoint"]) != (b[e]["checkpoint"], b[e]["nextCheckpoint"])]

    def compare_at_sync(self, phase):
        """checks.compare_memory; RAM and every device must match but for the RTC's clock (checks.rtc_clock_only)."""
        epoch, diffs = checks.compare_memory(self.cluster, rtc_clock_differs=self.rtc_seen.append)
        self.assertEqual([], diffs, f"RAM or devices differ at sync e{epoch} ({phase})")
        # the RTC fields as decoded there read the host's time (UTC, the guest's RTC base): the decoding is right
        for n in (self.cluster.nodes[1], self.cluster.nodes[2]):
            f = checks.rtc_fields(bytes.fromhex(n.admin("verify-device mc146818rtc")["hex"]))
            now = time.gmtime()
            apart = abs(checks.rtc_seconds_of_day(f["cmos"]) - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec))
            self.assertLess(min(apart, 86400 - apart), 60, f"node {n.id}: the RTC's CMOS clock does not read the host's time")
            self.assertLess(abs(int.from_bytes(f["baseRtc"], "big") - time.time()), 86400, f"node {n.id}: base_rtc is not a time near now")
        return epoch

    rtc_seen = []

    def test_1_replicates_while_the_guests_agree(self):
        self.wait("protected", lambda: self.cluster.status()[0] == 0)
        self.assertTrue(self.replica(1)["adaptive"])
        # The guest's boot goes on after the first (full) sync, and the two boots diverge: the policy may
        # checkpoint for a while then. Once the guest only serves redis, replication pays and the cluster stays.
        self.wait("the cluster replicates for good", lambda: self.replicating_for(40), timeout=300)
        booting = self.replica(1)["modeSwitches"]
        self.report.append(f"adaptive: {booting} mode switches while the guest booted")
        self.assertTrue(vm_running(self.cluster.nodes[2]), "the backup's VM does not run while replicating")
        self.__class__.marks["on"] = self.last_epoch()
        self.__class__.marks["switchesBefore"] = booting
        self.figures("agreeing, replicating", self.syncs_between(0, self.marks["on"])[-40:])

    def test_2_divergence_switches_to_checkpointing(self):
        self.diverge(True)
        self.wait("the cluster checkpoints", lambda: self.replica(1)["mode"] == "checkpoint" and self.replica(2)["mode"] == "checkpoint")
        self.assertGreaterEqual(self.replica(1)["modeSwitchesToCheckpoint"], 1)
        # Trials of replication come every probeEvery checkpoints and must fall back while this lasts: switched to
        # checkpointing, tried replication, back to checkpointing.
        self.wait("a trial of replication fell back to checkpointing",
                  lambda: self.replica(1)["modeSwitches"] - self.marks["switchesBefore"] >= 3 and self.replica(1)["mode"] == "checkpoint",
                  timeout=180)
        self.wait("checkpointing again", lambda: self.replica(1)["mode"] == "checkpoint", timeout=120)
        self.compare_at_sync("checkpointing")
        self.__class__.marks["off"] = self.last_epoch()
        syncs = self.syncs_between(self.marks["on"], self.marks["off"])
        checkpoints = [s for s in syncs if s["checkpoint"]]
        replicated = [s for s in syncs if not s["checkpoint"]]
        self.figures("diverging, replicating (trials)", replicated)
        self.figures("diverging, checkpointing", checkpoints)
        self.assertGreater(len(replicated), 0)
        # Each switch to checkpointing is the primary's verdict on a window of replicated syncs: what replication sent
        # against what checkpointing would have, above switchAbove (its event says both; the mean over the whole
        # phase also counts the syncs before the guest's writer got going and the windows that paid)
        verdicts = [float(m.group(1)) for e in self.replica(1)["events"]
                    for m in [re.search(r"wants checkpoint: .*\(([0-9.]+)x > ", e["what"])] if m]
        self.report.append(f"adaptive: windows that switched to checkpointing: {verdicts[-8:]} x a checkpoint")
        self.assertGreaterEqual(len(verdicts), 2, "fewer than two windows switched to checkpointing")
        # the event prints the ratio to two places (0.504 shows as 0.50), so a shown verdict equal to switchAbove passed
        self.assertTrue(all(v >= self.ADAPTIVE["switchAbove"] for v in verdicts), verdicts)
        self.assertGreater(len(checkpoints), 10, "few checkpoints while diverging")
        for s in checkpoints:   # a checkpoint sends every page the primary dirtied, hashes nothing
            self.assertEqual(0, s["wire"]["hashes"], s)
            self.assertEqual(s["union"], s["divergent"], s)
            if s["remoteDirty"] == 0:
                self.assertEqual(s["localDirty"], s["union"], s)
        # the backup's own bitmap is left out (its VM did not run), but after a switch whose sync did not complete
        self.assertGreater(sum(s["remoteDirty"] == 0 for s in checkpoints), 0.9 * len(checkpoints))
        # QEMU's own run state of the backup: while checkpointing its VM stays stopped, which QMP shows once a stop
        # has lasted a second (shorter ones are hidden as sync pauses). The trials of replication run it again, at
        # first every probeEvery checkpoints, then twice as far apart after each failure. probeEvery 128: with 32
        # (under a second of checkpoints here) trials that passed kept the cluster flapping (up to 44 switches to
        # checkpointing in a run), no stretch lasted the second, and this check failed in 1 of 11 runs (256 KiB writer).
        # One sample showing it stopped is the proof (a library stop is shown only once it passed a second); asking
        # for a quarter second more failed whenever the diverging guests' windows sat just above switchAbove and
        # trials kept running the backup, as in 3 of 4 runs late on 2026-12-07 on unchanged code.
        qmp = pc.Qmp(self.cluster.nodes[2].qmp_path)
        stopped = 0
        try:
            deadline = time.time() + 60
            while time.time() < deadline and stopped == 0:
                stopped += 0 if qmp("query-status")["return"]["running"] else 1
                time.sleep(0.05)
        finally:
            qmp.close()
        self.assertGreater(stopped, 0, "QMP never showed the checkpointing backup's VM stopped")

    def test_3_back_to_replication_when_the_guests_agree_again(self):
        self.diverge(False)
        switched = self.replica(1)["modeSwitches"]
        # 40 replicated syncs in a row since: a trial's window paid and it stayed
        self.wait("the cluster replicates again, for good", lambda: self.replicating_for(40, self.marks["off"]), timeout=300)
        self.assertGreaterEqual(self.replica(1)["modeSwitches"], switched)   # equal: "off" came during a trial, which stayed
        self.assertTrue(vm_running(self.cluster.nodes[2]), "the backup's VM does not run after the switch back")
        self.compare_at_sync("replicating after the switch back")
        self.__class__.marks["end"] = self.last_epoch()
        after = [s for s in self.syncs_between(self.marks["off"], self.marks["end"]) if not s["checkpoint"]][-40:]
        self.figures("agreeing again, replicating", after)
        self.assertLess(mean(s["wire"]["total"] for s in after), self.ADAPTIVE["switchAbove"] * mean(checkpoint_bytes(s) for s in after),
                        "after the divergence, replication still costs more than switchAbove x checkpointing")

    def test_4_same_inputs_same_order_same_mode_and_the_figures(self):
        compared, bad = checks.compare_input_order(self.cluster.nodes[1], self.cluster.nodes[2])
        self.assertGreater(compared, 50)
        self.assertEqual([], bad[:5])
        compared, differ = self.modes_agree()
        self.assertGreater(compared, 50)
        self.assertEqual([], differ[:10], "the replicas named different modes at these syncs")
        for r in self.rows:
            self.report.append(f"adaptive: {r['phase']:32s} {r['syncs']:5d} syncs  {r['wireBytesPerSync']:>10,} B/sync on the sync link  "
                               f"(a checkpoint: {r['checkpointBytesPerSync']:>10,}, {r['wireBytesPerSync'] / max(1, r['checkpointBytesPerSync']):.2f}x)  "
                               f"union {r['unionPages']}  divergent {r['divergentPages']}")
        self.report.append("adaptive: " + json.dumps(self.rows))
        p = self.replica(1)
        self.report.append(f"adaptive: mode switches on the primary: {p['modeSwitches']} ({p['modeSwitchesToCheckpoint']} to checkpointing)")
        if self.rtc_seen:
            self.report.append(f"adaptive: the RTC's clock registers differed at {len(self.rtc_seen)} sync point(s): {self.rtc_seen[0]}")
        self.assertEqual(4, len(self.rows), self.rows)

    def test_5_kill_the_primary_while_checkpointing(self):
        """kill -9 of the primary while the cluster checkpoints: the backup resumes from its last checkpoint, in
        checkpoint mode, and serves; the old primary rejoins as its passive backup."""
        old, new = self.cluster.nodes[1], self.cluster.nodes[2]
        self.diverge(True)
        self.wait("the cluster checkpoints", lambda: self.replica(1)["mode"] == "checkpoint" and self.replica(2)["mode"] == "checkpoint")
        t0 = int(time.time() * 1e6)
        old.kill(signal.SIGKILL)
        self.wait("node 2 is primary", lambda: new.admin.call("replica").get("role") == "primary", timeout=60)
        self.assertIsNotNone(self.load.wait_acks_after(t0), "no acknowledged write after the failover")
        self.assertEqual("checkpoint", new.admin("replica")["mode"], "the new primary left the mode of its last SYNC entry")
        self.assertTrue(vm_running(new), "the promoted backup's VM does not run")
        self.cluster.start_node(old.id)
        self.wait("the cluster is protected again", lambda: self.cluster.status()[0] == 0, timeout=180)
        self.assertEqual("backup", old.admin("replica")["role"])
        self.assertEqual(new.admin("replica")["mode"], old.admin("replica")["mode"], "the rejoined backup runs in another mode")
        self.report.append(f"adaptive: kill -9 of the checkpointing primary: node 2 serves in mode {new.admin('replica')['mode']}, node 1 rejoined")
        self.diverge(False)

    def test_6_every_acknowledged_write_survived(self):
        acked = self.verify_every_acknowledged_write()
        print(f"adaptive mode: {acked} acknowledged writes, all read back after the failover", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
