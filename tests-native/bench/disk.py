#!/usr/bin/env python3
"""The disk benchmark (see disk.sh): a guest appending to a replicated ext4 disk with a sync after each line, measured
like the RAM one. Each round boots the "nodisk" cluster and the "disk" cluster in turn (same guest command line, same
client load; only the drive differs), so the pause the disk adds is taken within a round. Every figure comes from
the primary's sync log (the admin command `syncs`): nothing is estimated but the checkpoint's bytes, which are the
bytes of the blocks the primary's guest wrote (what a checkpoint sends as block data, frames not counted)."""
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cluster"))
import checks  # noqa: E402
import plover_cluster as pc  # noqa: E402

BLOCK = 4096
VARIANTS = ("nodisk", "disk")
# Both variants boot this: with the drive, /data is its ext4 file system; without, the mount fails and the same
# append loop writes /data on the initramfs (tests-native/guest/init).
GUEST_ARGS = "plover.disk=vda plover.work=append"
DISK_SENT = 'plover_wire_sent_bytes_total{channel="synclink",kind="disk"}'   # a node's disk frames sent (wire counters)


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def redis_load(cluster, seconds):
    """redis-benchmark -t SET -P 16 -r 100000 from the client, run after run, for about `seconds`: requests sent."""
    requests, start = 0, time.time()
    while time.time() - start < seconds:
        cluster.client("redis-benchmark", "-h", pc.GUEST_IP, "-t", "SET", "-P", "16", "-r", "100000", "-n", "10000", "-q",
                       timeout=600)
        requests += 10000
    return requests


def sync_row(s):
    """One sync of the primary's log, the figures this benchmark keeps."""
    p = s["pauseUs"]
    return {"epoch": s["epoch"], "union": s["union"], "identical": s["identical"], "divergent": s["divergent"],
            "wire": s["wire"]["total"], "diskDirty": s.get("diskDirty", 0), "diskUnion": s.get("diskUnion", 0),
            "diskIdentical": s.get("diskIdentical", 0), "diskDivergent": s.get("diskDivergent", 0),
            "diskWireBytes": s.get("diskWireBytes", 0), "guestMs": p.get("guest", p["total"]) / 1000,
            "syncMs": p["total"] / 1000, "diskMs": p.get("disk", 0) / 1000, "diskReadMs": p.get("diskRead", 0) / 1000,
            "resumedEarly": s.get("resumedEarly", False)}


def figures(syncs, seconds, requests):
    """A measured window: the syncs' RAM and disk figures and pauses."""
    union = sum(s["union"] for s in syncs)
    out = {"syncCount": len(syncs), "seconds": round(seconds, 2), "syncsPerSecond": len(syncs) / seconds,
           "requests": requests, "rps": requests / seconds if requests else None,
           "unionPagesPerSync": union / len(syncs) if syncs else 0,
           "identicalPagesPct": 100 * sum(s["identical"] for s in syncs) / union if union else None,
           "wireBytesPerSync": sum(s["wire"] for s in syncs) / len(syncs) if syncs else 0,
           "pauseP50Ms": percentile([s["guestMs"] for s in syncs], 0.5),
           "pauseP99Ms": percentile([s["guestMs"] for s in syncs], 0.99),
           "syncP50Ms": percentile([s["syncMs"] for s in syncs], 0.5)}
    with_disk = [s for s in syncs if s["diskUnion"] > 0]
    if any(s["diskWireBytes"] for s in syncs):
        n = len(syncs)
        d_union = sum(s["diskUnion"] for s in syncs)
        d_ident = sum(s["diskIdentical"] for s in syncs)
        d_dirty = sum(s["diskDirty"] for s in syncs)
        d_wire = sum(s["diskWireBytes"] for s in syncs)
        d_div = sum(s["diskDivergent"] for s in syncs)
        without = [s for s in syncs if s["diskUnion"] == 0]
        out.update({
            "syncsWithDiskBlocks": len(with_disk),
            "diskDirtyBlocksPerSync": d_dirty / n,
            "diskUnionBlocksPerSync": d_union / n,
            "diskDivergentBlocksPerSync": d_div / n,
            "diskIdenticalPct": 100 * d_ident / d_union if d_union else None,
            # the disk frames (both replicas' bitmaps, the backup's block hashes, the divergent blocks), whole frames
            "diskWireBytesPerSync": d_wire / n,
            "diskBlockBytesPerSync": d_div * BLOCK / n,
            # a checkpoint sends every block the primary's guest wrote (block data only, its frames not counted)
            "checkpointDiskBytesPerSync": d_dirty * BLOCK / n,
            "checkpointOverPloverDiskBytes": d_dirty * BLOCK / d_wire if d_wire else None,
            "diskStepsP50Ms": percentile([s["diskMs"] for s in with_disk], 0.5),
            "diskStepsP99Ms": percentile([s["diskMs"] for s in with_disk], 0.99),
            "diskReadP50Ms": percentile([s["diskReadMs"] for s in with_disk], 0.5),
            # the same cluster's syncs with and without dirty disk blocks
            "pauseP50WithDiskBlocksMs": percentile([s["guestMs"] for s in with_disk], 0.5),
            "pauseP50WithoutDiskBlocksMs": percentile([s["guestMs"] for s in without], 0.5),
        })
    return out


def run_cluster(variant, rnd, cfg):
    work = tempfile.mkdtemp(prefix=f"plover-bench-disk-{variant}.")
    cluster = pc.Cluster(work, disk=variant == "disk", guest_args=GUEST_ARGS, pin=cfg["pin"], metrics=True)
    tag = f"round {rnd} {variant:<6}"
    t0 = time.time()
    cluster.start()
    try:
        primary = cluster.nodes[1]
        mounted = "PLOVER-GUEST disk /dev/vda on /data" in primary.serial()
        if mounted != (variant == "disk"):
            raise RuntimeError(f"{tag}: the guest {'did not mount' if variant == 'disk' else 'mounted'} a disk:\n{primary.serial()[-2000:]}")
        print(f"{tag} booted in {time.time() - t0:.0f} s ({'ext4 on the replicated disk' if mounted else 'no drive: the append loop writes RAM'})",
              flush=True)
        # warm-up, not measured: the first syncs after boot, the guest's first appends
        if cfg["load"]:
            redis_load(cluster, 3)
        else:
            time.sleep(3)
        first = primary.admin("replica")["lastSyncEpoch"]
        before = cluster.traffic()
        t = time.time()
        requests = redis_load(cluster, cfg["seconds"]) if cfg["load"] else (time.sleep(cfg["seconds"]) or 0)
        seconds = time.time() - t
        syncs = [sync_row(s) for s in checks.sync_log(primary) if s["epoch"] > first]
        traffic = {k: v - before.get(k, 0) for k, v in cluster.traffic().items()}
        aborted = primary.admin("replica")["syncsAborted"]
        # the primary's Prometheus endpoint: its disk series (summed over every sync since boot)
        scrape = {k: v for k, v in cluster.metrics(1).items()
                  if k.startswith("plover_sync_disk_") or 'kind="disk"' in k}
    finally:
        cluster.stop()
    row = {"variant": variant, "round": rnd, **figures(syncs, seconds, requests),
           "diskFrameBytesSentAllNodes": traffic.get(("synclink", "disk"), 0), "syncsAborted": aborted,
           "primaryMetrics": scrape, "syncs": syncs}
    line = (f"{tag} {row['syncCount']} syncs ({row['syncsPerSecond']:.1f}/s), guest pause p50 {row['pauseP50Ms']:.2f} ms, "
            f"p99 {row['pauseP99Ms']:.2f} ms" + (f", {row['rps']:.0f} requests/s" if row["rps"] else ""))
    if variant == "disk" and "diskIdenticalPct" in row:
        ident = "-" if row["diskIdenticalPct"] is None else f"{row['diskIdenticalPct']:.1f}%"
        line += (f"; disk per sync: {row['diskDirtyBlocksPerSync']:.1f} dirty, union {row['diskUnionBlocksPerSync']:.1f} "
                 f"blocks, {ident} identical, {row['diskDivergentBlocksPerSync']:.1f} divergent, "
                 f"{row['diskWireBytesPerSync'] / 1024:.1f} KiB sent against {row['checkpointDiskBytesPerSync'] / 1024:.1f} KiB "
                 f"of dirty blocks; disk steps p50 {row['diskStepsP50Ms'] or 0:.2f} ms")
    print(line, flush=True)
    if variant == "disk":
        m = lambda k: scrape.get(k, 0)  # noqa: E731
        print(f"{tag} the primary's Prometheus endpoint since boot: plover_sync_disk_union_blocks_total "
              f"{m('plover_sync_disk_union_blocks_total'):.0f}, _identical_percent {m('plover_sync_disk_identical_percent'):.1f}, "
              f"_divergent_blocks_total {m('plover_sync_disk_divergent_blocks_total'):.0f}, _wire_bytes_total "
              f"{m('plover_sync_disk_wire_bytes_total'):.0f}, {DISK_SENT} {m(DISK_SENT):.0f}", flush=True)
        if not m("plover_sync_disk_union_blocks_total") or not m("plover_sync_disk_wire_bytes_total"):
            raise RuntimeError(f"{tag}: the primary's metrics carry no disk figures: {scrape}")
    return row


def print_syncs(row, limit=12):
    """The disk syncs of one run, one line each (the first and last ones)."""
    syncs = [s for s in row["syncs"] if s["diskUnion"] > 0]
    print(f"\nper sync, round {row['round']} disk (syncs with dirty disk blocks: {len(syncs)} of {row['syncCount']}):")
    print(f"{'epoch':>6} {'dirty':>5} {'union':>5} {'ident%':>6} {'diverg':>6} {'disk B':>8} {'ckpt B':>8} | "
          f"{'pause ms':>8} {'sync ms':>7} {'disk ms':>7} {'read ms':>7} | {'RAM union':>9} {'ident%':>6}")
    shown = syncs if len(syncs) <= limit else syncs[:limit // 2] + [None] + syncs[-(limit // 2):]
    for s in shown:
        if s is None:
            print(f"{'...':>6}")
            continue
        print(f"{s['epoch']:>6} {s['diskDirty']:>5} {s['diskUnion']:>5} {100 * s['diskIdentical'] / s['diskUnion']:>6.1f} "
              f"{s['diskDivergent']:>6} {s['diskWireBytes']:>8} {s['diskDirty'] * BLOCK:>8} | {s['guestMs']:>8.2f} "
              f"{s['syncMs']:>7.2f} {s['diskMs']:>7.2f} {s['diskReadMs']:>7.2f} | {s['union']:>9} "
              f"{100 * s['identical'] / s['union'] if s['union'] else 100:>6.1f}")


def summarise(runs, rounds):
    by = {v: {r["round"]: r for r in runs if r["variant"] == v} for v in VARIANTS}
    summary = {}
    for v in VARIANTS:
        keys = ["syncsPerSecond", "rps", "pauseP50Ms", "pauseP99Ms", "syncP50Ms", "unionPagesPerSync", "identicalPagesPct",
                "wireBytesPerSync"]
        if v == "disk":
            keys += ["diskDirtyBlocksPerSync", "diskUnionBlocksPerSync", "diskDivergentBlocksPerSync", "diskIdenticalPct",
                     "diskWireBytesPerSync", "diskBlockBytesPerSync", "checkpointDiskBytesPerSync",
                     "checkpointOverPloverDiskBytes", "diskStepsP50Ms", "diskStepsP99Ms", "diskReadP50Ms",
                     "pauseP50WithDiskBlocksMs", "pauseP50WithoutDiskBlocksMs"]
        summary[v] = {k: spread([r.get(k) for r in by[v].values()]) for k in keys}
    both = [k for k in range(rounds) if k in by["disk"] and k in by["nodisk"]]
    summary["pauseAddedP50Ms"] = spread([by["disk"][k]["pauseP50Ms"] - by["nodisk"][k]["pauseP50Ms"] for k in both])
    summary["pauseAddedP99Ms"] = spread([by["disk"][k]["pauseP99Ms"] - by["nodisk"][k]["pauseP99Ms"] for k in both])
    summary["pauseP50DiskOverNodisk"] = spread([by["disk"][k]["pauseP50Ms"] / by["nodisk"][k]["pauseP50Ms"] for k in both
                                                if by["nodisk"][k]["pauseP50Ms"]])
    return summary


def fmt(s, digits=1, scale=1.0):
    if not s:
        return "-"
    return f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}-{s['max'] * scale:.{digits}f})"


def print_summary(summary, cfg):
    d, n = summary["disk"], summary["nodisk"]
    print(f"\n== medians (min-max) over {cfg['rounds']} rounds")
    print(f"disk, per sync: {fmt(d['diskDirtyBlocksPerSync'])} blocks dirty on the primary, union {fmt(d['diskUnionBlocksPerSync'])}, "
          f"identical {fmt(d['diskIdenticalPct'])}%, divergent (sent) {fmt(d['diskDivergentBlocksPerSync'])}")
    print(f"disk bytes per sync: {fmt(d['diskWireBytesPerSync'], 2, 1 / 1024)} KiB of disk frames (bitmaps, block hashes, "
          f"blocks), {fmt(d['diskBlockBytesPerSync'], 2, 1 / 1024)} KiB of it block data; every dirty block would be "
          f"{fmt(d['checkpointDiskBytesPerSync'], 2, 1 / 1024)} KiB (checkpoint/Plover {fmt(d['checkpointOverPloverDiskBytes'], 2)}x)")
    print(f"guest pause p50: {fmt(d['pauseP50Ms'], 2)} ms with the disk, {fmt(n['pauseP50Ms'], 2)} ms without: "
          f"{fmt(summary['pauseAddedP50Ms'], 2)} ms added ({fmt(summary['pauseP50DiskOverNodisk'], 2)}x); p99 "
          f"{fmt(d['pauseP99Ms'], 2)} / {fmt(n['pauseP99Ms'], 2)} ms")
    print(f"in the disk runs: the sync's disk steps p50 {fmt(d['diskStepsP50Ms'], 2)} ms (reading the union's blocks "
          f"{fmt(d['diskReadP50Ms'], 2)} ms), p99 {fmt(d['diskStepsP99Ms'], 2)} ms; guest pause p50 of syncs with dirty "
          f"disk blocks {fmt(d['pauseP50WithDiskBlocksMs'], 2)} ms, without {fmt(d['pauseP50WithoutDiskBlocksMs'], 2)} ms")
    print(f"syncs/s: {fmt(d['syncsPerSecond'])} with the disk, {fmt(n['syncsPerSecond'])} without; RAM union pages per sync "
          f"{fmt(d['unionPagesPerSync'], 0)} / {fmt(n['unionPagesPerSync'], 0)}, identical {fmt(d['identicalPagesPct'])} / "
          f"{fmt(n['identicalPagesPct'])}%" + (f"; requests/s {fmt(d['rps'], 0)} / {fmt(n['rps'], 0)}" if d.get("rps") else ""))


def main():
    cfg = {"rounds": int(os.environ.get("PLOVER_BENCH_ROUNDS", "3")),
           "seconds": float(os.environ.get("PLOVER_BENCH_SECONDS", "15")),
           "load": os.environ.get("PLOVER_BENCH_LOAD", "on") != "off",
           "pin": os.environ.get("PLOVER_BENCH_PIN", "off") == "on"}
    print(f"disk bench: guest 256 MiB, 2 vCPUs, TCG, {os.cpu_count()} host cores; guest '{GUEST_ARGS}' (append a line, "
          f"sync, again and again), a 256 MiB ext4 disk per replica (drives=data0) or none; "
          f"{'redis-benchmark -t SET -P 16 -r 100000' if cfg['load'] else 'no client load'} for {cfg['seconds']:.0f} s "
          f"per cluster; {cfg['rounds']} rounds, each booting {' and '.join(VARIANTS)} in turn"
          f"{', pinned' if cfg['pin'] else ''}", flush=True)
    runs = []
    started = time.time()
    for rnd in range(cfg["rounds"]):
        for variant in VARIANTS:
            runs.append(run_cluster(variant, rnd, cfg))
        print(f"-- round {rnd} done after {(time.time() - started) / 60:.1f} min", flush=True)
    print_syncs(next(r for r in runs if r["variant"] == "disk"))
    summary = summarise(runs, cfg["rounds"])
    print_summary(summary, cfg)
    # issue 15 item 6 names what to measure, not a target: none is evaluated
    out_dir = os.path.join(os.environ.get("PLOVER_ARTIFACTS", os.path.join(os.path.dirname(__file__), "..", "..", "artifacts")), "bench")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, os.environ.get("PLOVER_BENCH_OUT", "disk.json"))
    with open(path, "w") as f:
        json.dump({"setup": {"guestMemory": "256M", "vcpus": 2, "accel": "tcg", "hostCores": os.cpu_count(), "guestArgs": GUEST_ARGS,
                             "diskImage": "256 MiB ext4, one copy per replica", "blockBytes": BLOCK,
                             "timeouts": pc.TCG_TIMEOUTS, **cfg},
                   "runs": runs, "summary": summary, "targets": []}, f, indent=1)
    print(f"wrote {path} ({(time.time() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
