"""End to end: a replicated VM (real patched QEMU under TCG, real guest running redis-server, three nodes in their
own network namespaces, the witness as `plover witness`), a real client, and the three promises checked.

Run by ctest (e2e.Replication) from `./build.sh test`, as root, with the environment `./build.sh env` prints.
PLOVER_KEEP_TEST_DIRS=1 keeps the nodes' logs, configs and the capture.
"""
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
import plover_cluster as pc  # noqa: E402


class ReplicatedRedis(unittest.TestCase):
    """One cluster for the whole class (a TCG boot takes a while): client load first, then every check."""

    @classmethod
    def setUpClass(cls):
        cls.work = pc.work_dir("replication")
        cls.capture_path = os.path.join(cls.work, "client.pcap")
        cls.cluster = pc.Cluster(cls.work, metrics=True)
        cls.capture = None

        def start_capture(c):
            cls.capture = c.capture(cls.capture_path)

        try:
            cls.cluster.start(before_nodes=start_capture)
            cls.metrics_before = {n: cls.cluster.metrics(n) for n in (1, 2, 3)}
            # load (the primary's metrics scraped every 0.2 s meanwhile), then our own acknowledged writes
            cls.metrics_during, stop = [], threading.Event()

            def scrape():
                while not stop.wait(0.2):
                    try:
                        cls.metrics_during.append(cls.cluster.metrics(1))
                    except Exception as e:   # noqa: BLE001 - reported by the test
                        cls.metrics_during.append(e)
            scraper = threading.Thread(target=scrape, daemon=True)
            scraper.start()
            try:
                cls.bench = cls.cluster.client("redis-benchmark", "-h", pc.GUEST_IP, "-t", "SET", "-P", "16", "-r",
                                               "100000", "-n", "20000", "-q", timeout=900)
            finally:
                stop.set()
                scraper.join(30)
            cls.written = cls.cluster.redis_check("write", "e2e", 2000)
            cls.metrics_after = {n: cls.cluster.metrics(n) for n in (1, 2, 3)}
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()
        pc.remove_work_dir(cls.work)

    def primary(self):
        return self.cluster.nodes[1]

    def backup(self):
        return self.cluster.nodes[2]

    def test_1_the_service_answers_through_the_replicated_vm(self):
        self.assertIn("requests per second", self.bench)
        self.assertEqual(2000, self.written["acked"], self.written)
        read = self.cluster.redis_check("verify", "e2e", 2000)
        self.assertEqual(0, read["missingCount"] + read["wrongCount"], read)
        p, b = self.primary().admin("replica"), self.backup().admin("replica")
        self.assertEqual(("primary", "leader", "1.1"), (p["role"], p["consensusRole"], p["ballot"]),
                         "no failover may happen in this test")
        self.assertEqual("backup", b["role"])
        self.assertTrue(p["protected"], p)
        self.assertGreater(p["syncsCompleted"], 10, p)
        self.assertGreater(p["framesStolen"], 1000, p)

    def test_1b_every_byte_on_the_wire_is_counted_by_channel_and_kind(self):
        traffic = self.cluster.traffic()
        p = self.primary().admin("replica")
        # the primary sent every input to both followers as log entries, and the pages and hashes of its syncs
        self.assertGreater(traffic.get(("consensus", "entries"), 0), 0, traffic)
        self.assertGreater(traffic.get(("synclink", "bitmaps"), 0), 0, traffic)
        self.assertGreater(traffic.get(("synclink", "pages"), 0), 0, traffic)
        self.assertGreater(p["bytesSent"], p["framesStolen"] * 60, "every stolen frame travels at least once as an entry")
        # what the two replicas' sync links carried: each byte one sent, the other received
        b = self.backup().admin("replica")
        link = lambda r, field: sum(t[field] for t in r["traffic"] if t["channel"] == "synclink")
        self.assertAlmostEqual(link(p, "sentBytes"), link(b, "receivedBytes"), delta=64 << 20)

    def test_1c_the_prometheus_endpoints_were_scraped_during_the_load(self):
        before, during, after = self.metrics_before, self.metrics_during, self.metrics_after
        self.assertEqual([], [e for e in during if isinstance(e, Exception)])
        p, b, w = after[1], after[2], after[3]
        completed, commits = p['plover_syncs_total{outcome="completed"}'], p["plover_commit_latency_seconds_count"]
        pauses = p["plover_sync_guest_pause_seconds_count"]
        print(f"metrics: {len(during)} scrapes of the primary during the load; after it: {completed:.0f} syncs, identical "
              f"{p['plover_sync_identical_percent']:.1f}%, {p['plover_input_frames_stolen_total']:.0f} input frames, "
              f"{commits:.0f} commits timed (mean {1e6 * p['plover_commit_latency_seconds_sum'] / max(1, commits):.0f} us), "
              f"guest pause mean {1e3 * p['plover_sync_guest_pause_seconds_sum'] / max(1, pauses):.1f} ms", file=sys.stderr)
        self.assertGreaterEqual(len(during), 2, "the load was scraped at least twice")
        for node, role in ((p, "primary"), (b, "backup"), (w, "witness")):
            self.assertEqual(1, node[f'plover_role{{role="{role}"}}'], role)
            self.assertEqual(p["plover_term"], node["plover_term"])
        self.assertEqual(1, p["plover_protected"])
        self.assertEqual(1, p['plover_consensus_role{role="leader"}'])
        # the figures moved during the load, and the histograms count every sync
        scrapes = [before[1], *during, p]
        for series in ("plover_input_frames_stolen_total", "plover_inputs_proposed_total", 'plover_syncs_total{outcome="completed"}',
                       "plover_sync_guest_pause_seconds_count", "plover_commit_latency_seconds_count",
                       'plover_wire_sent_bytes_total{channel="consensus",kind="entries"}',
                       'plover_wire_sent_bytes_total{channel="synclink",kind="pages"}'):
            values = [s.get(series, 0) for s in scrapes]
            self.assertEqual(sorted(values), values, f"{series} fell: {values}")
            self.assertLess(values[1], values[-2], f"{series} did not move during the load: {values}")
        for node in (p, b):
            syncs = node['plover_syncs_total{outcome="completed"}'] + node['plover_syncs_total{outcome="aborted"}']
            self.assertEqual(syncs, node["plover_sync_guest_pause_seconds_count"])
            self.assertEqual(syncs, node['plover_sync_duration_seconds_bucket{le="+Inf"}'])
            self.assertGreaterEqual(node["plover_sync_identical_percent"], 0)
        self.assertGreater(b["plover_inputs_injected_total"], before[2].get("plover_inputs_injected_total", 0))
        self.assertGreater(w["plover_committed_inputs_total"], before[3].get("plover_committed_inputs_total", 0))
        self.assertIn('plover_output_frames_held{nic="0"}', p)
        # the same figures as the admin socket's, read just after the scrape
        r = self.primary().admin("replica")
        self.assertLessEqual(p["plover_input_frames_stolen_total"], r["framesStolen"])
        self.assertGreater(p["plover_input_frames_stolen_total"], 0.9 * r["framesStolen"])
        self.assertLessEqual(p['plover_syncs_total{outcome="completed"}'], r["syncsCompleted"] + 1)

    def test_2_the_backup_applied_every_input_in_the_same_order(self):
        compared, bad = checks.compare_input_order(self.primary(), self.backup())
        self.assertGreater(compared, 10, "too few syncs to compare")
        self.assertEqual([], bad)
        p, b = self.primary().admin("replica"), self.backup().admin("replica")
        if p["lastApplied"] == b["lastApplied"]:
            self.assertEqual(p["inputDigest"], b["inputDigest"])
            if b["roleChanges"]["joins"] == 0:   # a backup that joined took the digest, not the inputs before it
                self.assertEqual(p["inputsInjected"], b["inputsInjected"])
        # the backup compared the primary's digest at every cut; every frame of every input reached its guest
        self.assertEqual(0, b["inputDivergences"], b)
        self.assertEqual(0, p["injectFailures"] + b["injectFailures"], (p["injectFailures"], b["injectFailures"]))
        self.assertEqual(0, p["inputsDroppedOnError"] + b["inputsDroppedOnError"])

    def test_3_no_output_reached_the_client_before_the_backup_applied_its_sync(self):
        stopped = pc.Cluster.stop_capture(self.capture)
        self.assertEqual(0, self.capture.dropped, "the capture itself dropped frames: the check needs every one")
        captured, released, problems = checks.check_output_guard(self.primary(), self.backup(), self.capture_path,
                                                                 stopped)
        # nothing left before its release, every released frame arrived, and nothing else did (so the backup's
        # own output never left either)
        self.assertEqual([], problems)
        self.assertGreater(captured, 1000, "the capture saw the load")
        self.assertLessEqual(captured, released)

    def test_4_guest_memory_is_identical_at_a_sync_point(self):
        epoch, diffs = checks.compare_memory(self.cluster)
        self.assertEqual([], diffs, f"guest RAM differs at the sync point of epoch {epoch}")

    def test_5_qmp_reports_plover_and_guards_the_run_state(self):
        """query-plover on both replicas, the events of the start, and an operator's stop, system_reset and
        system_powerdown refused (QMP and HMP, with the reason) while cont is accepted without effect: the guest
        keeps running."""
        p_admin = self.primary().admin("replica")
        with contextlib.closing(pc.Qmp(self.primary().qmp_path)) as qmp:
            r = qmp("query-plover")["return"]
            self.assertEqual(("primary", "replicate", 1, 2, True, False, True),
                             (r["role"], r["mode"], r["node"], r["backup"], r["protected"], r["fenced"], r["sync-link"]), r)
            self.assertEqual("", r["problem"], r)
            self.assertEqual((p_admin["term"], 1), (r["term"], r["leader"]), r)
            self.assertGreaterEqual(r["commit-index"], p_admin["commitIndex"], r)
            self.assertGreaterEqual(r["counters"]["syncs-completed"], p_admin["syncsCompleted"], r)
            self.assertGreaterEqual(r["last-sync"]["epoch"], p_admin["lastSyncEpoch"], r)
            last = r["last-sync"]
            self.assertEqual(last["union-pages"], last["identical-pages"] + last["divergent-pages"], last)
            self.assertGreater(last["wire-bytes"], 0, last)
            # (guest counts from the replica's vm_stop at the SYNC entry, total from when the sync engine took it up)
            self.assertGreater(min(last["guest-pause-us"], last["total-us"]), 0, last)
            self.assertLess(abs(last["started-us"] / 1e6 - time.time()), 600, last)
            for command in ("stop", "system_reset", "system_powerdown"):
                e = qmp(command)
                self.assertIn("error", e, f"{command}: {e}")
                self.assertIn(f"plover: '{command}' is refused: Plover replicates this VM (node 1, primary)",
                              e["error"]["desc"], e)
            # HMP's commands call the same code and print the refusal (patch 0009)
            for command in ("stop", "system_reset", "system_powerdown"):
                out = qmp("human-monitor-command", **{"command-line": command})["return"]
                self.assertIn(f"Error: plover: '{command}' is refused: Plover replicates this VM (node 1, primary)",
                              out, command)
            self.assertEqual({}, qmp("cont")["return"])
        with contextlib.closing(pc.Qmp(self.backup().qmp_path)) as qmp:
            r = qmp("query-plover")["return"]
            self.assertEqual(("backup", 2, False, True), (r["role"], r["node"], r["protected"], r["sync-link"]), r)
            self.assertNotIn("backup", r)
            self.assertGreater(r["counters"]["syncs-completed"], 0, r)
            e = qmp("system_reset")
            self.assertIn("(node 2, backup)", e["error"]["desc"], e)
        # the events of the start: each replica left "starting", and the primary was protected by node 2
        self.primary().wait_event("PLOVER_ROLE_CHANGED", 0, where=lambda d: (d["previous"], d["role"]) == ("starting", "primary"))
        self.primary().wait_event("PLOVER_PROTECTION_RESTORED", 0, where=lambda d: d["backup"] == 2)
        # (the backup may pass through joining: started after the primary, it joins the running cluster)
        self.backup().wait_event("PLOVER_ROLE_CHANGED", 0, where=lambda d: d["previous"] in ("starting", "joining") and d["role"] == "backup")
        for n in (self.primary(), self.backup()):
            self.assertEqual([], n.events("PLOVER_FENCED") + n.events("PLOVER_PROTECTION_LOST"), n.id)
        # the refused commands changed nothing: the service still answers
        after = self.cluster.redis_check("write", "after-qmp", 200)
        self.assertEqual(200, after["acked"], after)

    def test_6_syncs_are_not_run_state_changes_to_qmp(self):
        """Every sync stops and resumes both guests, but to a QMP client (libvirt) the VM runs throughout (patch
        0010): query-status says running, during syncs too, and no STOP or RESUME event was sent during the load
        (each replica's event monitor recorded every event since QEMU started: one RESUME, when Plover started the
        guest of a QEMU started with -S)."""
        p, b = self.primary(), self.backup()
        before = p.admin("replica")["syncsCompleted"]
        done = threading.Event()

        def load():
            try:
                self.cluster.redis_check("write", "status", 1000)
            finally:
                done.set()
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        states = {1: [], 2: []}
        with contextlib.closing(pc.Qmp(p.qmp_path)) as qp, contextlib.closing(pc.Qmp(b.qmp_path)) as qb:
            # both replicas' run state, as fast as QMP answers, until the client's writes are done (at least 100)
            while (not done.is_set() or len(states[1]) < 100) and len(states[1]) < 5000:
                for node_id, qmp in ((1, qp), (2, qb)):
                    st = qmp("query-status")["return"]
                    states[node_id].append((st["status"], st["running"]))
                time.sleep(0.005)
        loader.join(600)
        syncs = p.admin("replica")["syncsCompleted"] - before
        self.assertGreater(syncs, 5, "syncs happened while query-status was polled")
        for node_id, seen in states.items():
            wrong = [st for st in seen if st != ("running", True)]
            self.assertEqual([], wrong, f"node {node_id}: {len(wrong)} of {len(seen)} query-status answers during "
                                        f"{syncs} syncs were not running")
        for n in (p, b):
            stops, resumes = n.events("STOP"), n.events("RESUME")
            why = f"node {n.id}: {len(stops)} STOP and {len(resumes)} RESUME events over {n.admin('replica')['syncsCompleted']} syncs"
            self.assertEqual(0, len(stops), why)
            self.assertLessEqual(len(resumes), 1, why)   # the start (if the recorder was connected by then)
        print(f"query-status under load: {len(states[1])} answers per replica during {syncs} syncs, all running; "
              f"no STOP event in the run", file=sys.stderr)


class BadClusters(unittest.TestCase):
    """A wrong key or a missing peer: a clear error, and no replica left running on its own."""

    def run_failing(self, name, **kw):
        work = pc.work_dir(name)
        cluster = pc.Cluster(work, timeouts={**pc.TCG_TIMEOUTS, "startupMs": 8000}, **kw.pop("cluster", {}))
        try:
            cluster.start(wait=False, **kw)
            deadline = time.time() + 60
            vms = [n for n in cluster.vm_nodes() if n.proc is not None]
            while time.time() < deadline and any(n.alive() for n in vms):
                time.sleep(0.2)
            return cluster, {n.id: (n.alive(), n.proc.returncode, n.stderr()) for n in vms}
        finally:
            cluster.stop()
            pc.remove_work_dir(work)

    def test_a_backup_with_another_key_is_refused_and_no_vm_keeps_running(self):
        _, nodes = self.run_failing("wrongkey", cluster={"wrong_key_for": [2]})
        for node_id, (alive, rc, err) in nodes.items():
            self.assertFalse(alive, f"node {node_id} still runs")
            self.assertNotEqual(0, rc)
            self.assertIn("cannot join cluster", err, err[-3000:])
            # Node 1 checks node 2's signature and says why; node 2 only sees itself refused.
            self.assertIn("node 2's signature does not verify" if node_id == 1 else "it refused us", err, err[-3000:])
            self.assertNotIn("cluster ready; guest started", err)

    def test_a_primary_without_its_backup_never_starts_the_guest(self):
        _, nodes = self.run_failing("nobackup", nodes=(3, 1))
        alive, rc, err = nodes[1]
        self.assertFalse(alive)
        self.assertNotEqual(0, rc)
        self.assertIn("no answer to the start-up probe from node 2", err, err[-3000:])
        self.assertNotIn("guest started", err)


class CheckersCanFail(unittest.TestCase):
    """The checkers above on made-up data: each one reports the problem it exists to find."""

    class FakeNode:
        def __init__(self, replies, node_id=0):
            self.replies, self.id = replies, node_id

        def admin(self, command):
            reply = self.replies[command.split()[0]]
            return reply(command) if callable(reply) else reply

    def test_memory_comparison_names_the_differing_page(self):
        def node(node_id, digest, hashes):
            result = {"epoch": 7, "digest": digest, "blocks": [{"id": 0, "name": "pc.ram", "digest": digest}]}
            state = {"armed": False}
            return self.FakeNode({"verify-result": lambda _: {"armed": state["armed"], "result": result if state.get("hit") else None},
                                  "verify-at-sync": lambda _: state.update(hit=True) or {},
                                  "sync-now": {}, "verify-pages": {"hashes": hashes}}, node_id)
        cluster = type("C", (), {"nodes": {1: node(1, "aa", ["1", "2", "3"]), 2: node(2, "bb", ["1", "9", "3"])}})
        epoch, diffs = checks.compare_memory(cluster, timeout=5)
        self.assertEqual(7, epoch)
        self.assertEqual(["block 'pc.ram': 1 page(s) differ, first: [1]"], diffs)

    def test_memory_comparison_fails_when_the_block_lists_differ(self):
        def node(node_id, blocks):
            result = {"epoch": 7, "digest": "d" * len(blocks), "blocks": [{"id": i, "name": n, "digest": "x"}
                                                                      for i, n in enumerate(blocks)]}
            state = {}
            return self.FakeNode({"verify-result": lambda _: {"armed": False, "result": result if state.get("hit") else None},
                                  "verify-at-sync": lambda _: state.update(hit=True) or {},
                                  "sync-now": {}, "verify-pages": {"hashes": []}}, node_id)
        cluster = type("C", (), {"nodes": {1: node(1, ["pc.ram", "vga.vram"]), 2: node(2, ["pc.ram"])}})
        _, diffs = checks.compare_memory(cluster, timeout=5)
        self.assertEqual(["the RAM blocks differ: primary ['pc.ram', 'vga.vram'], backup ['pc.ram']"], diffs)

    def test_device_comparison_names_the_differing_sections(self):
        d = lambda name, h: {"name": name, "hash": h}  # noqa: E731
        self.assertEqual([], checks.compare_devices([d("cpu", "1"), d("apic", "2")], [d("cpu", "1"), d("apic", "2")]))
        self.assertEqual(["1 of 2 device state section(s) differ: ['apic']"],
                         checks.compare_devices([d("cpu", "1"), d("apic", "2")], [d("cpu", "1"), d("apic", "3")]))
        self.assertEqual(["the device state sections differ: primary ['cpu', 'apic'], backup ['cpu']"],
                         checks.compare_devices([d("cpu", "1"), d("apic", "2")], [d("cpu", "1")]))

    def test_split_brain_check_catches_overlapping_releases_across_terms(self):
        w = lambda term, first, last: {"term": term, "frames": 5, "firstUs": first, "lastUs": last}  # noqa: E731
        # a deposed primary (term 1) still releasing after the new one (term 2) began
        self.assertEqual(1, len(checks.split_brain({"1.1": [w(1, 100, 900)], "2.1": [w(2, 500, 2000)]})))
        # two nodes in one term
        self.assertEqual(["term 3: nodes 1.1 and 2.1 both released output"],
                         checks.split_brain({"1.1": [w(3, 100, 200)], "2.1": [w(3, 300, 400)]}))
        # a clean handover, and a node's own terms in sequence
        self.assertEqual([], checks.split_brain({"1.1": [w(1, 100, 400), w(2, 450, 460)], "2.1": [w(3, 500, 2000)],
                                                 "1.2": [w(4, 2100, 2200)]}))

    def test_output_check_catches_a_frame_seen_before_its_release(self):
        import struct
        path = os.path.join(tempfile.mkdtemp(prefix="plover-pcap."), "x.pcap")
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            for t_us in (1_000_000, 3_000_000):   # the first frame arrives before anything was released
                f.write(struct.pack("<IIII", t_us // 1_000_000, t_us % 1_000_000, 0, 0))
        sync = lambda epoch, out_us, frames: {"epoch": epoch, "outcome": "completed", "outputUs": out_us, "outputFrames": frames}
        primary = self.FakeNode({"syncs": {"syncs": [sync(1, 2_000_000, 2)]}})
        backup = self.FakeNode({"syncs": {"syncs": [sync(1, 2_500_000, 0)]}})
        captured, released, problems = checks.check_output_guard(primary, backup, path)
        self.assertEqual((2, 2), (captured, released))
        self.assertEqual(2, len(problems), problems)   # released before the backup applied; seen before released
        self.assertIn("before the backup applied", problems[0])
        self.assertIn("frame 1 reached the client", problems[1])
        backup = self.FakeNode({"syncs": {"syncs": [sync(1, 1_500_000, 0)]}})
        _, _, problems = checks.check_output_guard(primary, backup, path, stopped_us=10_000_000)
        self.assertEqual(1, len(problems), problems)
        primary = self.FakeNode({"syncs": {"syncs": [sync(1, 500_000, 3)]}})   # 3 released, 2 arrived
        backup = self.FakeNode({"syncs": {"syncs": [sync(1, 400_000, 0)]}})
        _, _, problems = checks.check_output_guard(primary, backup, path, stopped_us=10_000_000)
        self.assertEqual(["1 released frame(s) never reached the client"], problems)
        shutil.rmtree(os.path.dirname(path))

    def test_input_order_check_catches_a_different_digest(self):
        s = lambda e, i, d: {"epoch": e, "outcome": "completed", "logIndex": i, "inputDigest": d}
        p = self.FakeNode({"syncs": {"syncs": [s(1, 10, "a"), s(2, 20, "b")]}})
        b = self.FakeNode({"syncs": {"syncs": [s(1, 10, "a"), s(2, 20, "c")]}})
        compared, bad = checks.compare_input_order(p, b)
        self.assertEqual(2, compared)
        self.assertEqual(1, len(bad))
        self.assertIn("e2:", bad[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
