#!/usr/bin/env python3
"""The e2e benchmark (see e2e.sh): one run, modes interleaved. Every round boots each mode's cluster in turn
(unreplicated, Plover, checkpoint), unpinned and pinned, and measures in it every R with redis-benchmark -t SET
-P 16, then one closed-loop client (-c 1 -P 1). Each ratio is computed within a round (the same minutes, the same
machine state) and reported as the median over rounds with min-max."""
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cluster"))
import checks  # noqa: E402
import plover_cluster as pc  # noqa: E402

MODES = ["unreplicated", "plover", "checkpoint"]
REPLICATED = ("plover", "checkpoint")
KEYSPACES = [100, 100_000, 100_000_000]
PAPER_IDENTICAL = "74-80%"


def env_list(name, default, cast=str):
    raw = os.environ.get(name)
    return [cast(x) for x in raw.split(",")] if raw else default


def redis_benchmark(cluster, *args, timeout):
    """redis-benchmark --csv from the client host: (requests/s, p50 ms, p99 ms)."""
    out = cluster.client("redis-benchmark", "-h", pc.GUEST_IP, "-t", "SET", "--csv", *args, timeout=timeout)
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells and cells[0] == "SET":
            return float(cells[1]), float(cells[4]), float(cells[6])
    raise RuntimeError(f"redis-benchmark printed no SET line:\n{out[-2000:]}")


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def window_figures(cluster, first_epoch, traffic_before, requests, seconds):
    """What the replicated cluster did between the two marks: syncs, bytes (every node, every channel but the
    observers'), pauses, commit latency."""
    primary = cluster.nodes[1]
    status = primary.admin("replica")
    syncs = [s for s in checks.sync_log(primary) if s["epoch"] > first_epoch]
    traffic = {k: v - traffic_before.get(k, 0) for k, v in cluster.traffic().items() if k[0] != "observer"}
    by_channel, by_kind = {}, {}
    for (channel, kind), v in traffic.items():
        by_channel[channel] = by_channel.get(channel, 0) + v
        by_kind[kind] = by_kind.get(kind, 0) + v
    union = sum(s["union"] for s in syncs)
    # the pause is how long the primary's guest stood still (less than the sync when it resumed early)
    pauses = [s["pauseUs"].get("guest", s["pauseUs"]["total"]) / 1000 for s in syncs]
    durations = [s["pauseUs"]["total"] / 1000 for s in syncs]
    sent = sum(traffic.values())
    commit = status["commitLatencyUs"]
    return {
        "syncs": [{"epoch": s["epoch"], "union": s["union"], "identical": s["identical"], "divergent": s["divergent"],
                   "deviceStateBytes": s["deviceStateBytes"], "startedUs": s["startedUs"], "pauseUs": s["pauseUs"],
                   "leadUs": s.get("leadUs"), "subBlocks": s.get("subBlocks", 0), "repairedPages": s.get("repairedPages", 0)}
                  for s in syncs],
        "syncCount": len(syncs),
        "syncsPerSecond": len(syncs) / seconds,
        "wireBytes": sent,
        "bytesPerRequest": sent / requests,
        "bytesByChannel": by_channel,
        "bytesByKind": by_kind,
        "identicalPct": 100 * sum(s["identical"] for s in syncs) / union if union else None,
        "unionPagesPerSync": union / len(syncs) if syncs else 0,
        # sub-block hash collisions: divergent pages sent again whole, and the syncs that needed it (the REPAIR round)
        "repairedPages": sum(s.get("repairedPages", 0) for s in syncs),
        "syncsRepairedPct": 100 * sum(1 for s in syncs if s.get("repairedPages", 0)) / len(syncs) if syncs else 0,
        "pauseP50Ms": percentile(pauses, 0.5),
        "pauseP99Ms": percentile(pauses, 0.99),
        "syncP50Ms": percentile(durations, 0.5),
        "resumedEarlyPct": 100 * sum(1 for s in syncs if s.get("resumedEarly")) / len(syncs) if syncs else None,
        "commitP50Us": commit["p50"] if commit["count"] else None,
        "commitP99Us": commit["p99"] if commit["count"] else None,
        "ballot": status["ballot"],
        "aborted": status["syncsAborted"],
    }


SYNC_PHASES = ("stop", "bitmap", "hash", "subBlocks", "transfer", "deviceState", "apply", "resume")

# The primary's epoch before its cut (the sync record's leadUs: how long before the stop each last event was), as
# hand-offs from one event to the next; the last one ends at the stop.
LEAD_HOPS = (("commit", "inputArrived", "inputCommitted"), ("toGuest", "inputCommitted", "inputInjected"),
             ("guestAnswers", "inputInjected", "outputHeld"), ("idleDetection", "outputHeld", "idleTriggered"),
             ("propose", "idleTriggered", "syncProposed"), ("syncCommit", "syncProposed", None))


def lead_hops(syncs):
    """Medians in ms of each hand-off over the syncs whose epoch saw every event in order (one request each)."""
    rows = []
    for s in syncs:
        lead = s.get("leadUs") or {}
        if all(lead.get(k, -1) >= 0 for _, k, _ in LEAD_HOPS):
            hops = {name: (lead[a] - (lead[b] if b else 0)) / 1000 for name, a, b in LEAD_HOPS}
            if all(v >= 0 for v in hops.values()):
                rows.append(hops)
    return {"epochs": len(rows), **{name: percentile([r[name] for r in rows], 0.5) for name, _, _ in LEAD_HOPS}}


def one_client_breakdown(window, requests, p50_ms):
    """Where a closed-loop client's request goes (window: window_figures of its run): each request's output waits for
    a sync (one per request when the client waits for every answer), so its latency is the sync plus everything
    before the sync starts."""
    syncs = window["syncs"]
    return {"syncsPerRequest": window["syncCount"] / requests,
            "syncP50Ms": window["syncP50Ms"] or 0,
            "guestPauseP50Ms": window["pauseP50Ms"],
            "phasesP50Ms": {k: percentile([s["pauseUs"].get(k, 0) / 1000 for s in syncs], 0.5) or 0 for k in SYNC_PHASES},
            "commitP50Ms": (window["commitP50Us"] or 0) / 1000,
            "beforeSyncP50Ms": lead_hops(syncs),
            "outsideSyncMs": p50_ms - (window["syncP50Ms"] or 0)}


def run_cluster(mode, pinned, rnd, cfg):
    """Boots one cluster, measures every R and the closed-loop client, stops it. Returns (runs, latency row)."""
    work = tempfile.mkdtemp(prefix=f"plover-bench-e2e-{mode}.")
    cluster = pc.Cluster(work, mode=mode, pin=pinned, smp=cfg["smp"], tcg_threads=cfg["tcgThreads"], icount=cfg["icount"],
                         sync=({k: v for k, v in (("earlyResume", cfg["earlyResume"]), ("deviceStateDelta", cfg["deviceStateDelta"]))
                                if not v} | ({"resumePoint": cfg["resumePoint"]} if cfg["resumePoint"] else {})
                               | {k: cfg[k] for k in ("subBlockBytes", "subBlockHashBytes") if cfg[k] is not None}) or None)
    tag = f"round {rnd} {'pinned' if pinned else 'unpinned':>8} {mode:<12}"
    t0 = time.time()
    cluster.start()
    print(f"{tag} booted in {time.time() - t0:.0f} s", flush=True)
    runs = []
    try:
        # warm-up, not measured: the first syncs after boot, page-cache and allocator first touches
        redis_benchmark(cluster, "-P", "16", "-r", "1000", "-n", str(cfg["warmup"]), timeout=600)
        primary = cluster.nodes[1]
        for r in cfg["keyspaces"]:
            if mode in REPLICATED:
                primary.admin("metrics-reset")
                first = primary.admin("replica")["lastSyncEpoch"]
                before = cluster.traffic()
            t = time.time()
            rps, _, _ = redis_benchmark(cluster, "-P", "16", "-r", str(r), "-n", str(cfg["requests"]), timeout=1800)
            seconds = time.time() - t
            row = {"mode": mode, "pinned": pinned, "round": rnd, "keyspace": r, "requests": cfg["requests"],
                   "rps": rps, "seconds": round(seconds, 2)}
            if mode in REPLICATED:
                row.update(window_figures(cluster, first, before, cfg["requests"], seconds))
            runs.append(row)
            extra = ""
            if mode in REPLICATED:
                ident = f"{row['identicalPct']:.0f}%" if row["identicalPct"] is not None else "-"
                extra = (f", {row['syncCount']} syncs, {row['bytesPerRequest']:.0f} B/request, {ident} identical, "
                         f"pause p50 {row['pauseP50Ms'] or 0:.1f} ms")
                if row["repairedPages"]:
                    extra += f", {row['repairedPages']} pages repaired in {row['syncsRepairedPct']:.1f}% of syncs"
            print(f"{tag} R={r:<10} {rps:9.0f} requests/s{extra}", flush=True)
        if mode in REPLICATED:
            primary.admin("metrics-reset")
            first = primary.admin("replica")["lastSyncEpoch"]
            before = cluster.traffic()
        t = time.time()
        rps, p50, p99 = redis_benchmark(cluster, "-c", "1", "-P", "1", "-r", "100000", "-n", str(cfg["latencyRequests"]),
                                        timeout=1800)
        latency = {"mode": mode, "pinned": pinned, "round": rnd, "samples": cfg["latencyRequests"], "rps": rps,
                   "p50Ms": p50, "p99Ms": p99}
        print(f"{tag} one client: p50 {p50:.3f} ms, p99 {p99:.3f} ms ({rps:.0f} requests/s)", flush=True)
        if mode in REPLICATED:
            window = window_figures(cluster, first, before, cfg["latencyRequests"], time.time() - t)
            latency["breakdown"] = one_client_breakdown(window, cfg["latencyRequests"], p50)
            b = latency["breakdown"]
            print(f"{tag} one client, where a request's time goes (medians): {b['syncsPerRequest']:.2f} syncs per "
                  f"request; the sync {b['syncP50Ms']:.2f} ms (" +
                  ", ".join(f"{k} {v:.2f}" for k, v in b["phasesP50Ms"].items()) +
                  f"); commit {b['commitP50Ms']:.2f} ms; the rest of the request (client, network, guest, idle "
                  f"detection, the SYNC entry's commit) {b['outsideSyncMs']:.2f} ms", flush=True)
            lead = b["beforeSyncP50Ms"]
            if lead["epochs"]:
                print(f"{tag} one client, the primary before the sync (medians over {lead['epochs']} epochs with every "
                      "event): " + ", ".join(f"{name} {lead[name]:.2f}" for name, _, _ in LEAD_HOPS) + " ms", flush=True)
    finally:
        cluster.stop()
    return runs, latency


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarise(runs, latency, cfg):
    """Per (pinned, R): each mode's medians, and each ratio computed within a round, then its median and range."""
    summary = []
    for pinned in cfg["pins"]:
        for r in cfg["keyspaces"]:
            def rows(mode):
                return {x["round"]: x for x in runs if x["mode"] == mode and x["pinned"] == pinned and x["keyspace"] == r}
            u, p, c = rows("unreplicated"), rows("plover"), rows("checkpoint")
            rounds = sorted(set(u) | set(p) | set(c))

            def ratio(a, b, key, inverse=False):
                out = []
                for k in rounds:
                    if k in a and k in b and a[k].get(key) and b[k].get(key):
                        out.append(b[k][key] / a[k][key] if inverse else a[k][key] / b[k][key])
                return spread(out)
            s = {"pinned": pinned, "keyspace": r}
            for mode, rs in (("unreplicated", u), ("plover", p), ("checkpoint", c)):
                if not rs:
                    continue
                s[mode] = {key: spread([x.get(key) for x in rs.values()]) for key in
                           ("rps", "bytesPerRequest", "identicalPct", "syncsPerSecond", "pauseP50Ms", "pauseP99Ms",
                            "commitP50Us", "commitP99Us") if mode in REPLICATED or key == "rps"}
            s["ploverOverUnreplicated"] = ratio(p, u, "rps")
            s["ploverOverCheckpoint"] = ratio(p, c, "rps")
            s["checkpointOverUnreplicated"] = ratio(c, u, "rps")
            s["checkpointBytesOverPlover"] = ratio(c, p, "bytesPerRequest")
            summary.append(s)
    lat = []
    for pinned in cfg["pins"]:
        by = {m: {x["round"]: x for x in latency if x["mode"] == m and x["pinned"] == pinned} for m in MODES}
        row = {"pinned": pinned}
        for m in MODES:
            if by[m]:
                row[m] = {"p50Ms": spread([x["p50Ms"] for x in by[m].values()]),
                          "p99Ms": spread([x["p99Ms"] for x in by[m].values()])}
        for m in REPLICATED:
            row[f"{m}P50OverUnreplicated"] = spread([by[m][k]["p50Ms"] / by["unreplicated"][k]["p50Ms"]
                                                     for k in by[m] if k in by["unreplicated"]])
        lat.append(row)
    return summary, lat


def fmt(s, key="median", digits=0, scale=1.0, suffix=""):
    if not s:
        return "-"
    m, lo, hi = s[key] * scale, s["min"] * scale, s["max"] * scale
    return f"{m:.{digits}f}{suffix} ({lo:.{digits}f}-{hi:.{digits}f})"


def print_tables(summary, lat):
    for pinned in sorted({s["pinned"] for s in summary}):
        print(f"\n== {'pinned (primary and unreplicated guest on core 0; backup, witness, client on core 1)' if pinned else 'unpinned (every process on both cores)'}")
        print(f"{'R':>10} | {'requests/s: unrepl':>20} {'plover':>20} {'checkpoint':>20} | {'plover/unrepl':>17} "
              f"{'plover/ckpt':>17} | {'B/req plover':>20} {'B/req ckpt':>22} {'ckpt/plover B':>17} | {'ident%':>12}")
        for s in (x for x in summary if x["pinned"] == pinned):
            g = lambda mode, key: (s.get(mode) or {}).get(key)  # noqa: E731
            print(f"{s['keyspace']:>10} | {fmt(g('unreplicated', 'rps')):>20} {fmt(g('plover', 'rps')):>20} "
                  f"{fmt(g('checkpoint', 'rps')):>20} | {fmt(s['ploverOverUnreplicated'], digits=2):>17} "
                  f"{fmt(s['ploverOverCheckpoint'], digits=2):>17} | {fmt(g('plover', 'bytesPerRequest')):>20} "
                  f"{fmt(g('checkpoint', 'bytesPerRequest')):>22} {fmt(s['checkpointBytesOverPlover'], digits=2):>17} | "
                  f"{fmt(g('plover', 'identicalPct')):>12}")
        print(f"{'R':>10} | {'syncs/s plover':>16} {'ckpt':>16} | {'pause p50 ms plover':>20} {'ckpt':>16} | "
              f"{'pause p99 ms plover':>20} {'ckpt':>16} | {'commit p50/p99 us plover':>26}")
        for s in (x for x in summary if x["pinned"] == pinned):
            g = lambda mode, key: (s.get(mode) or {}).get(key)  # noqa: E731
            print(f"{s['keyspace']:>10} | {fmt(g('plover', 'syncsPerSecond')):>16} {fmt(g('checkpoint', 'syncsPerSecond')):>16} | "
                  f"{fmt(g('plover', 'pauseP50Ms'), digits=1):>20} {fmt(g('checkpoint', 'pauseP50Ms'), digits=1):>16} | "
                  f"{fmt(g('plover', 'pauseP99Ms'), digits=1):>20} {fmt(g('checkpoint', 'pauseP99Ms'), digits=1):>16} | "
                  f"{fmt(g('plover', 'commitP50Us'))} / {fmt(g('plover', 'commitP99Us'))}")
        for row in (x for x in lat if x["pinned"] == pinned):
            parts = [f"{m} p50 {fmt(row[m]['p50Ms'], digits=3)} ms, p99 {fmt(row[m]['p99Ms'], digits=3)} ms"
                     for m in MODES if m in row]
            print("one client (-c 1 -P 1): " + "; ".join(parts))
            print("  p50 over unreplicated: " + ", ".join(f"{m} {fmt(row[f'{m}P50OverUnreplicated'], digits=1, suffix='x')}"
                                                        for m in REPLICATED))


def targets(summary, lat):
    """Issue 12's targets, evaluated (reported, not asserted) on the pinned runs at R = 100000."""
    out = []
    for s in summary:
        if s["keyspace"] != 100_000:
            continue
        tag = "pinned" if s["pinned"] else "unpinned"
        for name, value, target in (
                (f"checkpoint_bytes_ge_5x_plover_{tag}", s["checkpointBytesOverPlover"], 5),
                (f"plover_rps_ge_1.5x_checkpoint_{tag}", s["ploverOverCheckpoint"], 1.5),
                (f"plover_rps_ge_70pct_unreplicated_{tag}", s["ploverOverUnreplicated"], 0.7)):
            v = value["median"] if value else None
            out.append({"name": name, "value": v, "target": target, "met": v is not None and v >= target})
    for row in lat:
        v = (row.get("ploverP50OverUnreplicated") or {}).get("median")
        out.append({"name": f"one_client_p50_le_5x_unreplicated_{'pinned' if row['pinned'] else 'unpinned'}",
                    "value": v, "target": 5, "met": v is not None and v <= 5})
    return out


def main():
    pins = {"both": [False, True], "on": [True], "off": [False]}[os.environ.get("PLOVER_BENCH_PIN", "both")]
    cfg = {"requests": int(os.environ.get("PLOVER_BENCH_REQUESTS", "40000")),
           "rounds": int(os.environ.get("PLOVER_BENCH_ROUNDS", "3")),
           "latencyRequests": int(os.environ.get("PLOVER_BENCH_LATENCY_REQUESTS", "1000")),
           "warmup": int(os.environ.get("PLOVER_BENCH_WARMUP", "5000")),
           "keyspaces": env_list("PLOVER_BENCH_KEYSPACES", KEYSPACES, int),
           "modes": env_list("PLOVER_BENCH_MODES", MODES),
           "smp": int(os.environ.get("PLOVER_BENCH_SMP", "2")),
           "tcgThreads": os.environ.get("PLOVER_BENCH_TCG", "multi"),
           "icount": os.environ.get("PLOVER_BENCH_ICOUNT") or None,
           "earlyResume": os.environ.get("PLOVER_BENCH_EARLY_RESUME", "on") != "off",
           "deviceStateDelta": os.environ.get("PLOVER_BENCH_DEVICE_DELTA", "on") != "off",
           "resumePoint": os.environ.get("PLOVER_BENCH_RESUME_POINT") or None,
           "subBlockBytes": int(os.environ["PLOVER_BENCH_SUB_BLOCK"]) if os.environ.get("PLOVER_BENCH_SUB_BLOCK") else None,
           "subBlockHashBytes": int(os.environ["PLOVER_BENCH_SUB_BLOCK_HASH"]) if os.environ.get("PLOVER_BENCH_SUB_BLOCK_HASH") else None,
           "pins": pins}
    print(f"e2e bench: guest 256 MiB, {cfg['smp']} vCPU(s), TCG ({cfg['tcgThreads']}-threaded"
          f"{', -icount ' + cfg['icount'] if cfg['icount'] else ''}), {os.cpu_count()} host cores; "
          f"{'' if cfg['earlyResume'] else 'sync.earlyResume off; '}"
          f"{'' if cfg['deviceStateDelta'] else 'sync.deviceStateDelta off; '}"
          f"{'sync.resumePoint ' + cfg['resumePoint'] + '; ' if cfg['resumePoint'] else ''}"
          f"{''.join(f'sync.{k} {cfg[k]}; ' for k in ('subBlockBytes', 'subBlockHashBytes') if cfg[k] is not None)}"
          f"redis-benchmark -t SET -P 16 -n {cfg['requests']} for R in {cfg['keyspaces']}, then -c 1 -P 1 "
          f"-n {cfg['latencyRequests']}; {cfg['rounds']} rounds, each booting {', '.join(cfg['modes'])} in turn, "
          f"{' and '.join('pinned' if p else 'unpinned' for p in pins)}", flush=True)
    runs, latency = [], []
    started = time.time()
    for rnd in range(cfg["rounds"]):
        for pinned in pins:
            for mode in cfg["modes"]:
                r, lat = run_cluster(mode, pinned, rnd, cfg)
                runs += r
                latency.append(lat)
        print(f"-- round {rnd} done after {(time.time() - started) / 60:.1f} min", flush=True)
    summary, lat = summarise(runs, latency, cfg)
    print_tables(summary, lat)
    tg = targets(summary, lat)
    for t in tg:
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        print(f"target {t['name']:<45} {'met' if t['met'] else 'NOT met'} (value {value}, target {t['target']})")
    out_dir = os.path.join(os.environ.get("PLOVER_ARTIFACTS", os.path.join(os.path.dirname(__file__), "..", "..", "artifacts")), "bench")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, os.environ.get("PLOVER_BENCH_OUT", "e2e.json"))
    with open(path, "w") as f:
        json.dump({"setup": {"guestMemory": "256M", "vcpus": cfg["smp"], "accel": "tcg", "hostCores": os.cpu_count(),
                             "pinCores": {str(k): v for k, v in pc.PIN_CORES.items()}, "timeouts": pc.TCG_TIMEOUTS,
                             "paperIdenticalPct": PAPER_IDENTICAL, **cfg},
                   "runs": runs, "latency": latency, "summary": summary, "latencySummary": lat, "targets": tg},
                  f, indent=1)
    print(f"wrote {path} ({(time.time() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
