"""Replicated boots, many times: every one must reach a serving guest.

Each boot is a fresh three-node cluster (tests-native/cluster/plover_cluster.py) whose guest must answer redis
PING within PLOVER_BOOT_BOUND_S seconds. A boot fails when a QEMU exits (an abort such as `iotlb_to_section:
Assertion ... failed`, or QEMU stopping itself because the cluster did not form), when either guest's console
reports an RCU stall or a soft lockup, or when the guest never serves. All boots run; the test then fails naming
each failed boot, its kind and the evidence.

Run by ctest (e2e.Boots) from `./build.sh test`, as root, with the environment `./build.sh env` prints.
PLOVER_BOOTS (default 5) sets the number of boots, PLOVER_BOOT_SMP (default 2) the guest's vCPUs and
PLOVER_BOOT_BOUND_S (default 150) how long a boot may take to serve. PLOVER_KEEP_TEST_DIRS=1 keeps every boot's
logs (a failed boot's logs are always kept). A loop to measure a failure rate:
    PLOVER_BOOTS=40 python3 -m unittest -v test_boot
"""
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plover_cluster as pc  # noqa: E402

BOOTS = int(os.environ.get("PLOVER_BOOTS", "5"))
# A replicated boot serves after 10-15 s here (up to ~45 s under load); a guest reports an RCU stall 21 s into it
BOUND_S = float(os.environ.get("PLOVER_BOOT_BOUND_S", "150"))
SMP = int(os.environ.get("PLOVER_BOOT_SMP", "2"))

STALL = re.compile(r"rcu: INFO: .*detected stalls?|rcu_\w+ kthread timer wakeup didn't happen|"
                   r"rcu_\w+ kthread starved|self-detected stall|BUG: soft lockup")


def stall_lines(text):
    return [line.strip() for line in text.splitlines() if STALL.search(line)]


def abort_lines(text):
    return [line.strip() for line in text.splitlines()
            if "Assertion" in line or "Aborted" in line or "core dumped" in line or "Segmentation" in line]


def ping(cluster):
    r = subprocess.run(["ip", "netns", "exec", cluster.client_ns, "timeout", "3", "redis-cli", "-h", pc.GUEST_IP,
                        "PING"], capture_output=True, text=True, timeout=30)
    return r.stdout.strip() == "PONG"


def boot_once(work):
    """One replicated boot: (kind, evidence, seconds); kind is None for a boot that served cleanly."""
    cluster = pc.Cluster(work, smp=SMP, log=lambda *_: None)
    vms = [cluster.nodes[1], cluster.nodes[2]]
    t0 = time.time()
    try:
        cluster.start(wait=False)
        served = False
        while time.time() - t0 < BOUND_S:
            for n in vms + [cluster.nodes[3]]:
                if n.proc is not None and not n.alive():
                    err, rc = n.stderr(), n.proc.returncode
                    aborts = abort_lines(err)
                    if n.role == "witness":
                        kind = "witness-exit"
                    else:   # a signal (abort, segfault) or its message; else QEMU stopped itself (fenced)
                        kind = "qemu-abort" if rc < 0 or aborts else "qemu-exit"
                    last = [line for line in err.strip().splitlines() if "plover: fenced" in line] or \
                        err.strip().splitlines()[-1:]
                    return kind, f"node {n.id} exited with {rc}: {' | '.join(aborts or last)}", time.time() - t0
            for n in vms:
                stalls = stall_lines(n.serial())
                if stalls:
                    return "stall", f"node {n.id} guest: {' | '.join(stalls[:3])}", time.time() - t0
            if ping(cluster):
                served = True
                break
            time.sleep(0.5)
        seconds = time.time() - t0
        # a stall that the guest recovered from still counts
        for n in vms:
            stalls = stall_lines(n.serial())
            if stalls:
                return "stall", f"node {n.id} guest: {' | '.join(stalls[:3])}", seconds
        if not served:
            return "never-served", f"no PONG within {BOUND_S:.0f} s; primary serial tail: " \
                                   f"{cluster.nodes[1].serial()[-300:]!r}", seconds
        return None, "", seconds
    finally:
        cluster.stop()


class ReplicatedBoots(unittest.TestCase):
    def test_every_replicated_boot_serves(self):
        failures, kinds, times = [], {}, []
        for i in range(1, BOOTS + 1):
            work = pc.work_dir(f"boot{i}")
            kind, evidence, seconds = boot_once(work)
            times.append(seconds)
            print(f"boot {i}/{BOOTS}: {kind or 'served'} in {seconds:.1f} s{': ' + evidence if kind else ''}",
                  file=sys.stderr, flush=True)
            if kind:
                kinds[kind] = kinds.get(kind, 0) + 1
                failures.append(f"boot {i}: {kind}: {evidence} (logs kept in {work})")
            else:
                pc.remove_work_dir(work)
        print(f"{BOOTS - len(failures)}/{BOOTS} boots served; {len(failures)} failed "
              f"{kinds or ''}; boot times {min(times):.1f}-{max(times):.1f} s", file=sys.stderr)
        self.assertEqual([], failures, f"{len(failures)} of {BOOTS} replicated boots failed")


class CheckersCanFail(unittest.TestCase):
    """The console and stderr checks above on text as the kernel and QEMU print it."""

    def test_stall_reports_are_recognised(self):
        console = ("[   31.204117] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n"
                   "[   31.210000] rcu: rcu_preempt kthread timer wakeup didn't happen for 5252 jiffies! g-1115 f0x0 "
                   "RCU_GP_WAIT_FQS(5) ->state=0x402\n"
                   "[   31.220000] rcu: \tPossible timer handling issue on cpu=1 timer-softirq=1081\n")
        self.assertEqual(2, len(stall_lines(console)))
        self.assertEqual([], stall_lines("PLOVER-GUEST-READY 52:54:00:77:00:64 10.77.0.100/24\n"))

    def test_qemu_aborts_are_recognised(self):
        err = ("qemu-system-x86_64: plover: node 1 runs as a replica\n"
               "qemu-system-x86_64: ../system/physmem.c:2671: iotlb_to_section: Assertion `section_index < "
               "d->map.sections_nb' failed.\n")
        self.assertEqual(1, len(abort_lines(err)))
        self.assertIn("iotlb_to_section", abort_lines(err)[0])


if __name__ == "__main__":
    unittest.main()
