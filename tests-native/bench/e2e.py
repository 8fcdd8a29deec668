#!/usr/bin/env python3
"""The e2e benchmark (see e2e.sh). Each mode boots its own cluster once (three network namespaces, TCG guests), then
runs every R in turn, PLOVER_BENCH_REPS times, in the same order for every mode."""
import json
import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cluster"))
import checks  # noqa: E402
import plover_cluster as pc  # noqa: E402

KEYSPACES = [100, 100_000, 100_000_000]
MODES = ["unreplicated", "plover", "remus"]


def run_mode(mode, requests, reps):
    work = tempfile.mkdtemp(prefix=f"plover-bench-e2e-{mode}.")
    cluster = pc.Cluster(work, mode=mode)
    rows = []
    print(f"== {mode}: booting ...", flush=True)
    cluster.start()
    try:
        primary = cluster.nodes[1]
        for r in KEYSPACES:
            for rep in range(reps):
                if mode != "unreplicated":
                    primary.admin("metrics-reset")
                    first = primary.admin("replica")["lastSyncEpoch"]
                    traffic_before = cluster.traffic()
                t0 = time.time()
                out = cluster.client("redis-benchmark", "-h", pc.GUEST_IP, "-t", "SET", "-P", "16", "-r", str(r),
                                     "-n", str(requests), "-q", timeout=1800)
                seconds = time.time() - t0
                m = re.search(r"SET: ([\d.]+) requests per second", out)
                row = {"mode": mode, "keyspace": r, "rep": rep, "requests": requests,
                       "rps": float(m.group(1)) if m else requests / seconds, "seconds": round(seconds, 2)}
                if mode != "unreplicated":
                    status = primary.admin("replica")
                    syncs = [s for s in checks.sync_log(primary) if s["epoch"] > first]
                    union = sum(s["union"] for s in syncs)
                    # every byte the three nodes sent (whole frames, consensus and sync link; not observers)
                    traffic = {k: v - traffic_before.get(k, 0) for k, v in cluster.traffic().items() if k[0] != "observer"}
                    sent = sum(traffic.values())
                    row.update({
                        "syncs": len(syncs),
                        "wireBytes": sent,
                        "consensusBytes": sum(v for (c, _), v in traffic.items() if c == "consensus"),
                        "syncLinkBytes": sum(v for (c, _), v in traffic.items() if c == "synclink"),
                        "bytesPerRequest": sent / requests,
                        "identicalPct": 100 * sum(s["identical"] for s in syncs) / max(union, 1),
                        "unionPages": union,
                        "pauseMedianMs": statistics.median([s["pauseUs"]["total"] / 1000 for s in syncs]) if syncs else 0,
                        "commitP50Us": status["commitLatencyUs"]["p50"], "commitP99Us": status["commitLatencyUs"]["p99"],
                        "ballot": status["ballot"],
                    })
                rows.append(row)
                extra = (f", {row['syncs']} syncs, {row['bytesPerRequest']:.0f} B/request, "
                         f"{row['identicalPct']:.0f}% identical, ballot {row['ballot']}") if mode != "unreplicated" else ""
                print(f"  R={r:<10} rep {rep}: {row['rps']:9.0f} requests/s{extra}", flush=True)
    finally:
        cluster.stop()
    return rows


def main():
    requests = int(os.environ.get("PLOVER_BENCH_REQUESTS", "40000"))
    reps = int(os.environ.get("PLOVER_BENCH_REPS", "3"))
    cpu = os.cpu_count()
    print(f"e2e bench: guest 256 MiB, 2 vCPUs, TCG (multi-threaded); {cpu} host cores shared by every node; "
          f"redis-benchmark -t SET -P 16 -n {requests}, {reps} reps (median)")
    rows = []
    for mode in MODES:
        rows += run_mode(mode, requests, reps)

    def med(mode, r, key):
        values = [x[key] for x in rows if x["mode"] == mode and x["keyspace"] == r and key in x]
        return statistics.median(values) if values else None

    summary, targets = [], []
    print(f"\n{'R':>10} {'unrepl rps':>11} {'plover rps':>11} {'remus rps':>10} {'plover/unrepl':>14} "
          f"{'plover/remus':>13} {'B/req plover':>13} {'B/req remus':>12} {'remus/plover B':>15} {'ident%':>7}")
    for r in KEYSPACES:
        u, p, m = med("unreplicated", r, "rps"), med("plover", r, "rps"), med("remus", r, "rps")
        bp, bm = med("plover", r, "bytesPerRequest"), med("remus", r, "bytesPerRequest")
        s = {"keyspace": r, "unreplicatedRps": u, "ploverRps": p, "remusRps": m, "ploverOfUnreplicated": p / u,
             "ploverOverRemus": p / m, "bytesPerRequestPlover": bp, "bytesPerRequestRemus": bm,
             "remusBytesOverPlover": bm / bp if bp else None, "identicalPct": med("plover", r, "identicalPct")}
        summary.append(s)
        print(f"{r:>10} {u:>11.0f} {p:>11.0f} {m:>10.0f} {100 * s['ploverOfUnreplicated']:>13.0f}% "
              f"{s['ploverOverRemus']:>12.2f}x {bp:>13.0f} {bm:>12.0f} {s['remusBytesOverPlover']:>14.2f}x "
              f"{s['identicalPct']:>6.0f}%")
        targets += [
            {"name": f"plover_ge_85pct_unreplicated_R{r}", "value": s["ploverOfUnreplicated"], "target": 0.85,
             "met": s["ploverOfUnreplicated"] >= 0.85},
            {"name": f"plover_ge_3x_remus_R{r}", "value": s["ploverOverRemus"], "target": 3, "met": s["ploverOverRemus"] >= 3},
            {"name": f"bytes_per_request_10x_fewer_than_remus_R{r}", "value": s["remusBytesOverPlover"], "target": 10,
             "met": (s["remusBytesOverPlover"] or 0) >= 10},
        ]
    for t in targets:
        print(f"target {t['name']:<45} {'met' if t['met'] else 'NOT met'} (value {t['value']:.2f}, target {t['target']})")
    out_dir = os.path.join(os.environ.get("PLOVER_ARTIFACTS", os.path.join(os.path.dirname(__file__), "..", "..", "artifacts")), "bench")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "e2e.json")
    with open(path, "w") as f:
        json.dump({"setup": {"guestMemory": "256M", "vcpus": 2, "accel": "tcg", "hostCores": cpu, "requests": requests,
                             "reps": reps, "timeouts": pc.TCG_TIMEOUTS},
                   "runs": rows, "summary": summary, "targets": targets}, f, indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
