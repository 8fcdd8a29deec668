#!/usr/bin/env python3
"""./build.sh demo: a replicated Redis. Three simulated hosts (network namespaces), node 1 and node 2 run the
patched QEMU with libplover.so (primary and backup), node 3 runs `plover witness`; a client namespace runs about
30 s of redis-benchmark SET load against the guest, then the report: requests served, what every sync did,
consensus latency, bytes on the wire compared with what Remus-style checkpointing would have sent, and the three
promises checked (same inputs in the same order, identical memory, no output before the backup applied it).

With --disk (`./build.sh demo --disk`, or PLOVER_DEMO_DISK=1) each replica also gets a replicated ext4 disk
(its own copy of one image, listed in drives=) and the guest appends a line to a file on it with a sync after each
(plover.work=append, the disk pattern of redis' appendfsync always) while the client's load runs: the report then
shows each sync's disk blocks (dirty, union, identical %, bytes) and what checkpointing would have sent of them, and
the sync-point check hashes every block of the disk too.

Environment: what `./build.sh env` prints (build.sh exports it). PLOVER_DEMO_SECONDS changes the load time.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cluster"))
import checks  # noqa: E402
import plover_cluster as pc  # noqa: E402

PAGE = 4096


def pct(values, q):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def sync_mode(s):
    """A sync's mode for the report: "rep" or "ckpt", with the next one where a SYNC entry switched it (adaptive)."""
    mode = "ckpt" if s.get("checkpoint") else "rep"
    nxt = "ckpt" if s.get("nextCheckpoint", s.get("checkpoint")) else "rep"
    return mode if nxt == mode else f"{mode}->{nxt}"


def mib(n):
    return n / (1 << 20)


def disk_columns(s):
    """A sync's disk figures for its row: blocks the primary's guest wrote, the union, identical %, the disk frames'
    KiB and the time in disk steps."""
    union = s.get("diskUnion", 0)
    ident = f"{100 * (union - s.get('diskDivergent', 0)) / union:.1f}" if union else "-"
    return (f"        {s.get('diskDirty', 0):>5} {union:>5} {ident:>6} {s.get('diskWireBytes', 0) / 1024:>5.0f} "
            f"{s['pauseUs'].get('disk', 0) / 1000:>5.2f}")


def disk_report(syncs):
    """The disk part of the syncs (the sync log's disk figures): blocks dirty on the primary, in the unions,
    identical (not sent) and divergent (sent), the disk frames' bytes against sending every dirty block (what a
    checkpoint sends), and the time the sync spent in disk steps."""
    with_disk = [s for s in syncs if s.get("diskUnion", 0) > 0]
    union = sum(s["diskUnion"] for s in syncs)
    divergent = sum(s["diskDivergent"] for s in syncs)
    dirty = sum(s.get("diskDirty", 0) for s in syncs)
    wire = sum(s.get("diskWireBytes", 0) for s in syncs)
    disk_ms = [s["pauseUs"].get("disk", 0) / 1000 for s in with_disk]
    print(f"disk (4 KiB blocks): {len(with_disk)} of {len(syncs)} syncs had dirty blocks; the primary's guest wrote "
          f"{dirty} blocks, the unions held {union}, {100 * (union - divergent) / max(union, 1):.1f}% identical (not sent), "
          f"{divergent} divergent blocks sent")
    print(f"  disk frames on the wire (bitmaps, block hashes, blocks; both directions): {wire / 1024:.0f} KiB, against "
          f"{dirty * PAGE / 1024:.0f} KiB of blocks if every dirty block were sent (checkpointing)"
          + (f"; disk steps of a sync with dirty blocks: median {statistics.median(disk_ms):.2f} ms, max {max(disk_ms):.2f} ms"
             if disk_ms else ""))


def main():
    parser = argparse.ArgumentParser(description="./build.sh demo: a replicated Redis under load")
    parser.add_argument("--disk", action="store_true", default=os.environ.get("PLOVER_DEMO_DISK", "") not in ("", "0"),
                        help="a replicated ext4 disk per replica, written by the guest (or PLOVER_DEMO_DISK=1)")
    args = parser.parse_args()
    seconds = float(os.environ.get("PLOVER_DEMO_SECONDS", "30"))
    work = tempfile.mkdtemp(prefix="plover-demo.")
    capture_path = os.path.join(work, "client.pcap")
    cluster = (pc.Cluster(work, disk=True, guest_args="plover.disk=vda plover.work=append") if args.disk
               else pc.Cluster(work))
    state = {}
    print(f"starting three nodes in network namespaces (logs in {work}) and booting the guest under TCG ...")
    if args.disk:
        print("with a replicated disk: each replica's QEMU has its own copy of one 256 MiB ext4 image (drives=data0); "
              "the guest appends a line to /data/append.log and syncs, again and again")
    t0 = time.time()
    cluster.start(before_nodes=lambda c: state.update(capture=c.capture(capture_path)))
    try:
        primary, backup = cluster.nodes[1], cluster.nodes[2]
        print(f"redis in the replicated guest answers at {pc.GUEST_IP} after {time.time() - t0:.0f} s")
        for n in (primary, backup):
            r = n.admin("replica")
            print(f"  node {n.id}: {r['role']}, consensus {r['consensusRole']} in ballot {r['ballot']}, "
                  f"{r['syncsCompleted']} syncs so far (the first is a full sync of both booted guests)")
        first_epoch = primary.admin("replica")["lastSyncEpoch"]
        primary.admin("metrics-reset")
        backup.admin("divergence reset")   # the divergence figures of the load only
        traffic_before = cluster.traffic()

        print(f"\nclient: redis-benchmark -t SET -P 16 -r 100000 for about {seconds:.0f} s ...")
        requests, start = 0, time.time()
        rates = []
        while time.time() - start < seconds:
            out = cluster.client("redis-benchmark", "-h", pc.GUEST_IP, "-t", "SET", "-P", "16", "-r", "100000",
                                 "-n", "20000", "-q", timeout=600)
            requests += 20000
            rates.append(out.strip().splitlines()[-1])
        elapsed = time.time() - start
        traffic = {k: v - traffic_before.get(k, 0) for k, v in cluster.traffic().items()}
        written = cluster.redis_check("write", "demo", 1000)
        read = cluster.redis_check("verify", "demo", 1000)
        p_status = primary.admin("replica")

        syncs = [s for s in checks.sync_log(primary) if s["epoch"] > first_epoch]
        print(f"\nrequests served: {requests} SET in {elapsed:.1f} s = {requests / elapsed:.0f} requests/s "
              f"(redis-benchmark per run: {rates[-1]})")
        print(f"our own check: {written['acked']} writes acknowledged, read back: "
              f"{read['checked'] - read['missingCount'] - read['wrongCount']} of {read['checked']} correct")

        print(f"\nsyncs during the load: {len(syncs)} (triggers since start: {p_status['syncTriggers']})")
        head = (f"{'epoch':>6} {'union':>6} {'ident%':>6} {'diverg':>6} {'KiB':>7}   ms: {'guest':>5} {'sync':>6} "
                f"{'stop':>5} {'bitmap':>6} {'hash':>5} {'cmp':>5} {'xfer':>5} {'dev':>5} {'apply':>5} {'resume':>6}  mode")
        if args.disk:
            head += f"  disk: {'dirty':>5} {'union':>5} {'ident%':>6} {'KiB':>5} {'ms':>5}"
        print(head)
        shown = syncs if len(syncs) <= 20 else syncs[:5] + [None] + syncs[-14:]
        for s in shown:
            if s is None:
                print(f"{'...':>6}")
                continue
            p = {k: v / 1000 for k, v in s["pauseUs"].items()}
            ident = 100 * s["identical"] / s["union"] if s["union"] else 100
            print(f"{s['epoch']:>6} {s['union']:>6} {ident:>6.1f} {s['divergent']:>6} {s['wire']['total'] / 1024:>7.0f}"
                  f"       {p.get('guest', p['total']):>5.2f} {p['total']:>6.2f} {p['stop']:>5.2f} {p['bitmap']:>6.2f} {p['hash']:>5.2f} "
                  f"{p['compare']:>5.2f} {p['transfer']:>5.2f} {p['deviceState']:>5.2f} {p['apply']:>5.2f} "
                  f"{p['resume']:>6.2f}  {sync_mode(s)}" + (disk_columns(s) if args.disk else ""))
        if syncs:
            union = sum(s["union"] for s in syncs)
            ident = sum(s["identical"] for s in syncs)
            pauses = [s["pauseUs"].get("guest", s["pauseUs"]["total"]) / 1000 for s in syncs]
            print(f"all {len(syncs)}: union {union} pages, {100 * ident / max(union, 1):.1f}% identical (not sent), "
                  f"pause median {statistics.median(pauses):.2f} ms, p99 {pct(pauses, 0.99):.2f} ms, "
                  f"max {max(pauses):.2f} ms")
            sent = [s.get("deviceSectionsSent", 0) for s in syncs]
            saved = [s.get("deviceSections", 0) for s in syncs]
            if max(saved, default=0):
                print(f"device state: median {statistics.median(sent):.0f} of {statistics.median(saved):.0f} sections sent "
                      f"(the others equal the backup's), {statistics.median(s['deviceStateBytes'] for s in syncs) / 1024:.1f} KiB "
                      f"of {statistics.median(s['deviceStateSavedBytes'] for s in syncs) / 1024:.1f} KiB per sync")
            if args.disk:
                disk_report(syncs)
            whole = sum(s["divergent"] for s in syncs) * PAGE
            data = sum(s.get("pageDataBytes", 0) for s in syncs)
            sub = max((s.get("subBlockBytes", 0) for s in syncs), default=0)
            if sub:
                print(f"sub-blocks of {sub} bytes: {data / 1024:.0f} KiB of page data sent instead of {whole / 1024:.0f} KiB "
                      f"of whole divergent pages ({whole / max(data, 1):.1f}x fewer; the sub-block hashes that chose them "
                      f"are in the sync link's hash bytes below)")
        d = backup.admin("divergence")
        if d["pages"]:
            hist = " | ".join(f"{k} {100 * v / d['pages']:.0f}%" for k, v in d["histogram"].items())
            regions = ", ".join(f"{r['block']}+{r['offsetMiB']}MiB {r['pages']}" for r in d["topRegions"][:3])
            print(f"divergence (the backup compared each divergent page with its own copy): {d['pages']} pages in "
                  f"{d['syncs']} syncs; bytes differing per page: {hist}\n"
                  f"  {d['meanBytes']:.0f} bytes and {d['meanBlocks64']:.1f} of 64 64-byte blocks differ per page on average; "
                  f"busiest 1 MiB regions (of {d['regionsWithDivergence']}): {regions}; "
                  f"{d['recurring']['pages']} pages diverged in >= {d['recurring']['threshold']} of the last "
                  f"{min(d['syncs'], d['window'])} syncs (admin command 'divergence' on the backup for more)")

        lat = p_status["commitLatencyUs"]
        print(f"\nconsensus (INPUT entries, proposal to commit on the primary, {lat['count']} entries): "
              f"p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us, p99.9 {lat['p999']:.0f} us, max {lat['max']} us")

        plover_bytes = sum(v for (channel, _), v in traffic.items() if channel != "observer")
        by_channel = {}
        for (channel, kind), v in sorted(traffic.items(), key=lambda kv: -kv[1]):
            if channel != "observer" and v > 0:
                by_channel.setdefault(channel, []).append(f"{kind} {mib(v):.1f}")
        remus_bytes = sum((s["localDirty"] + s.get("diskDirty", 0)) * PAGE + s["deviceStateSavedBytes"] for s in syncs)
        print(f"\nbytes the three nodes sent during the load (whole frames, every channel but observers): "
              f"{mib(plover_bytes):.1f} MiB ({plover_bytes / max(requests, 1):.0f} B per request)")
        for channel, kinds in by_channel.items():
            print(f"  {channel}: " + ", ".join(kinds) + " MiB")
        print(f"Remus-style checkpointing would have sent every page the primary dirtied{' and every disk block it wrote' if args.disk else ''} plus the device state (its "
              f"inputs go to the primary only): {mib(remus_bytes):.1f} MiB ({remus_bytes / max(requests, 1):.0f} B "
              f"per request), {remus_bytes / max(plover_bytes, 1):.2f}x Plover's")

        print("\nthe three promises, checked now:")
        compared, bad = checks.compare_input_order(primary, backup)
        print(f"  same inputs, same order: {compared} syncs compared, {len(bad)} mismatches")
        stopped = pc.Cluster.stop_capture(state["capture"])
        captured, released, problems = checks.check_output_guard(primary, backup, capture_path, stopped)
        print(f"  output guard: the client saw {captured} frames from the guest, the primary released {released}, "
              f"each after the backup applied its sync: " + ("yes" if not problems else "NO: " + problems[0]))
        epoch, diffs = checks.compare_memory(cluster)
        what = "memory, devices and disk" if args.disk else "memory and devices"
        print(f"  identical {what} at the sync point of epoch {epoch}: " +
              (f"yes, every page{', disk block' if args.disk else ''} and device" if not diffs else "NO: " + "; ".join(diffs)))
        devices = (primary.admin("verify-result")["result"] or {}).get("devices", [])
        if devices:
            big = sorted(devices, key=lambda d: -d.get("bytes", 0))[:6]
            print("  largest device state sections (* always sent: CPUs, virtio): " +
                  ", ".join(f"{d['name']}{'*' if d.get('alwaysSent') else ''} {d.get('bytes', 0) / 1024:.1f} KiB" for d in big))
        ok = not bad and not diffs and not problems and read["missingCount"] + read["wrongCount"] == 0
        print("\n" + ("demo OK" if ok else "demo FAILED"))
        return 0 if ok else 1
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
