"""What a sync's stop costs the guest after it resumes (issue 18: under replication the guest answers a request in
0.54-0.68 ms where a whole unreplicated request takes 0.32 ms).

One guest with the library in probe mode (no replication: dirty logging on, packets pass), pinned as bench e2e pins
the primary, and one client doing one SET at a time. Before each request the library does, by condition:
  none     nothing;
  idle-2ms the client waits 2 ms, the VM runs on (idle): the host's part of a 2 ms pause;
  stop     stops and resumes the VM (admin `vm-hold 0`): what a sync does to the vCPUs;
  stop-2ms the same, stopped for 2 ms (about a sync's pause here);
  harvest  stops, takes and clears the dirty bitmaps, resumes (admin `dirty-sync`): what a sync does, including
           re-arming QEMU's dirty tracking, after which each page's first write takes TCG's slow path again.
Conditions alternate in blocks of 50 requests; each request's round trip is timed by the client. Prints the median
and p90 per condition and writes artifacts/bench/resume-cost.json.

Run as root with the environment of `./build.sh env`:  python3 tests-native/bench/resume_cost.py [REQUESTS]
"""
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))

CONDITIONS = {"none": None, "idle-2ms": "sleep", "stop": "vm-hold 0", "stop-2ms": "vm-hold 2", "harvest": "dirty-sync"}
BLOCK = 50
WARM_UP = 200   # requests before the timed ones (the first ones fault the guest's and redis' pages in)


def drive(guest_ip, admin_path, requests):
    """In the client namespace: the timed requests, the admin action before each. Prints {condition: [us...]}."""
    admin = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    admin.connect(admin_path)
    admin_file = admin.makefile("rwb")
    redis = socket.create_connection((guest_ip, 6379))
    redis.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = {c: [] for c in CONDITIONS}
    names = list(CONDITIONS)
    rng = random.Random(1)
    for i in range(-WARM_UP, requests):
        condition = names[(i // BLOCK) % len(names)]
        if CONDITIONS[condition] == "sleep":
            time.sleep(0.002)
        elif CONDITIONS[condition]:
            admin_file.write(CONDITIONS[condition].encode() + b"\n")
            admin_file.flush()
            reply = json.loads(admin_file.readline())
            if not reply.get("ok", False):
                raise RuntimeError(f"{CONDITIONS[condition]}: {reply}")
        key = f"key:{rng.randrange(100000):012d}".encode()
        command = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$3\r\nxxx\r\n" % (len(key), key)
        t = time.perf_counter()
        redis.sendall(command)
        answer = redis.recv(64)
        if i >= 0:
            times[condition].append((time.perf_counter() - t) * 1e6)
        if answer != b"+OK\r\n":
            raise RuntimeError(f"unexpected answer {answer!r}")
    print(json.dumps(times))


def main():
    import plover_cluster as pc
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    work = tempfile.mkdtemp(prefix="plover-resume-cost.")
    cluster = pc.Cluster(work, mode="probe", pin=True)
    try:
        cluster.start(wait=False)
        node = cluster.nodes[1]
        node.admin("out-mode 0 pass")   # probe mode holds the guest's output until told otherwise
        cluster.wait_service()
        warm = cluster.client("redis-cli", "-h", pc.GUEST_IP, "SET", "warm", "1")
        assert "OK" in warm, warm
        r = subprocess.run(["ip", "netns", "exec", cluster.client_ns, *cluster._pinned("client"), sys.executable,
                            os.path.abspath(__file__), "--drive", pc.GUEST_IP, node.admin_path, str(requests)],
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"driver failed: {r.stderr[-3000:]}")
        times = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        cluster.stop()
    rows = {}
    for condition, samples in times.items():
        samples.sort()
        rows[condition] = {"requests": len(samples), "p50_us": statistics.median(samples),
                           "p90_us": samples[int(len(samples) * 0.9)], "mean_us": statistics.fmean(samples)}
    base = rows["none"]["p50_us"]
    for condition, row in rows.items():
        print(f"{condition:8s} ({CONDITIONS[condition] or 'nothing'} before each request): p50 {row['p50_us']:.0f} us, "
              f"p90 {row['p90_us']:.0f} us, mean {row['mean_us']:.0f} us over {row['requests']} requests "
              f"(p50 +{row['p50_us'] - base:.0f} us against none)")
    out_dir = os.environ.get("PLOVER_ARTIFACTS", os.path.join(HERE, "..", "..", "artifacts"))
    os.makedirs(os.path.join(out_dir, "bench"), exist_ok=True)
    path = os.path.join(out_dir, "bench", "resume-cost.json")
    with open(path, "w") as f:
        json.dump({"benchmark": "resume-cost", "pinned": True, "block": BLOCK, "conditions": rows}, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--drive":
        drive(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
