#!/usr/bin/python3
"""Plots and an HTML report of the benchmarks' JSON files (./build.sh bench report).

    /usr/bin/python3 report.py [--dir DIR] [--plot NAME]... [--no-html]

DIR (default $PLOVER_ARTIFACTS/bench, else artifacts/bench of the repository) holds what the benchmarks wrote:
sync.json, consensus.json, hash.json, e2e.json. For each one present this draws its plots beside it
(DIR/NAME-WHAT.png, see plots.py; the NAME-*.png of an earlier run are replaced), then writes DIR/report.html: one
self-contained page (every PNG embedded) with the key figures of each JSON, the files found and their timestamps.
--plot NAME draws only that benchmark's plots (what each bench does at its end); --no-html skips the page.

Needs matplotlib: Debian's python3-matplotlib, which is for /usr/bin/python3 (./build.sh installs it). Without it
this exits 3 with a message naming the package; the benchmarks warn and go on.
"""
import argparse
import base64
import datetime
import html
import json
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = ["hash", "consensus", "sync", "e2e", "disk"]
EXIT_NO_MATPLOTLIB = 3


def default_dir():
    root = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
    return os.path.join(os.environ.get("PLOVER_ARTIFACTS") or os.path.join(root, "artifacts"), "bench")


def mtime(path):
    return datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)


def stamp(t):
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def load_json(path):
    """(data, error)"""
    try:
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict):
            return None, "not a JSON object"
        return data, None
    except (OSError, ValueError) as e:
        return None, f"cannot read: {e}"


# ---------------------------------------------------------------- plotting

def plot(name, path, out_dir):
    """Draws the plots of one benchmark's JSON; returns (Plots or None, error). Old NAME-*.png are removed first so
    that no plot of an earlier run stays beside the new JSON."""
    import plots
    data, err = load_json(path)
    if err:
        return None, err
    for f in os.listdir(out_dir):
        if f.startswith(name + "-") and f.endswith(".png"):
            os.remove(os.path.join(out_dir, f))
    try:
        return plots.PLOTTERS[name](data, out_dir), None
    except Exception:   # a plotter bug must not hide the other benchmarks' plots
        return None, "plotter failed:\n" + traceback.format_exc()


# ---------------------------------------------------------------- key figures

def f(v, digits=1, suffix=""):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "-" if v is None else html.escape(str(v))
    return f"{v:,.{digits}f}{suffix}"


def spread_text(s, digits=0, scale=1.0):
    """e2e.py's spread {"median", "min", "max", "n"} as 'median (min-max)'."""
    if not isinstance(s, dict) or not isinstance(s.get("median"), (int, float)):
        return "-"
    lo, hi = s.get("min"), s.get("max")
    rng = ""
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and f"{lo * scale:,.{digits}f}" != f"{hi * scale:,.{digits}f}":
        rng = f" ({lo * scale:,.{digits}f}-{hi * scale:,.{digits}f})"   # one round: no range
    return f"{s['median'] * scale:,.{digits}f}{rng}"


def table(headers, rows, caption=None):
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{caption}</caption>")
    out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def targets_table(targets):
    """consensus.json's {name: {value, target, met}} or e2e.json's [{name, value, target, met}]."""
    if isinstance(targets, dict):
        targets = [{"name": k, **v} for k, v in targets.items() if isinstance(v, dict)]
    if not isinstance(targets, list) or not targets:
        return ""
    rows = [[html.escape(str(t.get("name"))), f(t.get("value"), 2), f(t.get("target"), 2),
             '<span class="ok">met</span>' if t.get("met") else '<span class="bad">NOT met</span>']
            for t in targets if isinstance(t, dict)]
    return table(["target", "value", "target", ""], rows, "targets")


def figures_sync(d):
    out = []
    rows = [r for r in d.get("rows", []) if isinstance(r, dict)] if isinstance(d.get("rows"), list) else []
    out.append(f"<p>{f(d.get('cores'), 0)} cores, {f(d.get('reps'), 0)} reps per point (median), device state "
               f"{f((d.get('device_state_bytes') or 0) / 1024, 0)} KiB. {html.escape(str(d.get('note', '')))}</p>")

    def threads(r):
        t = r.get("hash_threads")
        return "-" if t is None or r.get("mode") != "plover" else "all" if t == 0 else f(t, 0)

    def line(r):
        b = r.get("pause_ms_breakdown") if isinstance(r.get("pause_ms_breakdown"), dict) else {}
        sub = r.get("sub_block_bytes")
        return [html.escape(str(r.get("memory", ""))), f(r.get("dirty_pages"), 0), f(r.get("divergent_pct"), 0),
                html.escape(str(r.get("mode", ""))), threads(r),
                "-" if sub is None else "page" if sub == 0 else f(sub, 0, " B"),
                {True: "yes", False: "no"}.get(r.get("record_divergence"), "-"),
                f(r.get("union_pages"), 0), f(r.get("sent_pages"), 0),
                f((r.get("wire_bytes") or 0) / 2**20, 2), f(r.get("ratio_to_essential"), 3) if r.get("mode") == "plover" else "-",
                f(r.get("pause_ms_median"), 2), f"{f(r.get('pause_ms_p10'), 2)}-{f(r.get('pause_ms_p90'), 2)}",
                f(b.get("hash"), 2), f(b.get("transfer"), 2), f(b.get("apply"), 2)]
    headers = ["memory", "dirty pages", "div. %", "mode", "hash threads", "sub-block", "backup compares", "union",
               "sent", "wire MiB", "ratio", "pause ms", "p10-p90", "hash", "transfer", "apply"]
    target = [r for r in rows if r.get("kind") in ("target", "subblocks")]
    if target:
        out.append(table(headers, [line(r) for r in target], "the target point (10,000 dirty pages, 25% divergent), "
                                                             "then by sub-block size"))
    for r in rows:
        if r.get("kind") == "hash-alone":
            ms = r.get("hash_ms", r.get("pause_ms_median"))
            out.append(f"<p>Hashing {f(r.get('dirty_pages'), 0)} pages on one side with nothing else running: "
                       f"{f(ms, 2)} ms (in a sync both sides hash at once on the same cores).</p>")
    grid = [r for r in rows if r.get("kind") == "grid"]
    if grid:
        out.append("<details><summary>every grid point</summary>" + table(headers, [line(r) for r in grid]) + "</details>")
    scale = d.get("scale")
    srows = scale.get("rows") if isinstance(scale, dict) else scale
    if isinstance(srows, list) and srows:
        note = html.escape(str(scale.get("note", ""))) if isinstance(scale, dict) else ""
        out.append(f"<details><summary>scale: {len(srows)} points</summary><p>{note}</p>" +
                   table(headers, [line(r) for r in srows if isinstance(r, dict)]) + "</details>")
    return "\n".join(out)


def figures_consensus(d):
    out = []
    host = d.get("host") if isinstance(d.get("host"), dict) else {}
    load = " ".join(map(str, host.get("loadavg", []))) if isinstance(host.get("loadavg"), list) else "?"
    out.append(f"<p>3 processes on loopback TCP, {f(host.get('cpus'), 0)} CPUs, load {html.escape(load)}, nice "
               f"{f(host.get('nice'), 0)}. Failover (kill -9 of the leader until the other replica leads): "
               f"<b>{f(d.get('failover_ms'), 1, ' ms')}</b>; order violations on the new leader: "
               f"{f(d.get('order_violations_on_new_leader'), 0)}.</p>")
    rows = []
    groups = [("raw TCP RTT", d.get("raw_rtt")), ("commit", d.get("latency")), ("batched", d.get("throughput"))]
    for label, g in groups:
        if not isinstance(g, dict):
            continue
        for k, r in g.items():
            if not isinstance(r, dict):
                continue
            err = f' <span class="bad">{html.escape(str(r["error"]))}</span>' if r.get("error") else ""
            rows.append([f"{label} {html.escape(str(k))}{err}", f(r.get("per_second"), 0), f(r.get("p50_us")),
                         f(r.get("p99_us")), f(r.get("p999_us")), f(r.get("p50_over_rtt"), 2), f(r.get("p99_over_rtt"), 2),
                         "yes" if isinstance(r.get("cdf"), dict) else "no"])
    out.append(table(["workload", "inputs/s", "p50 us", "p99 us", "p99.9 us", "p50/RTT", "p99/RTT", "CDF points"], rows))
    out.append(targets_table(d.get("targets")))
    return "\n".join(out)


def figures_hash(d):
    rows = [r for r in d.get("results", []) if isinstance(r, dict)] if isinstance(d.get("results"), list) else []
    out = [f"<p>CPU level {f(d.get('cpu_level'), 0)}, variant {html.escape(str(d.get('variant', '?')))}, "
           f"{f(d.get('threads_all'), 0)} threads = all; hashes identical across kernels: "
           f"{html.escape(str(d.get('identical', '?')))}. {html.escape(str(d.get('unit', '')))}</p>"]
    # one line per (set, threads): the read limit, then each kernel's GB/s and its share of the read limit
    kernels = list(dict.fromkeys(r.get("kernel") for r in rows if r.get("kernel") != "read"))
    points = list(dict.fromkeys((r.get("set"), r.get("threads")) for r in rows))
    pivot = []
    for st, th in points:
        by = {r.get("kernel"): r for r in rows if r.get("set") == st and r.get("threads") == th}
        line = [html.escape(str(st)), f(th, 0), f((by.get("read") or {}).get("gbps"), 1)]
        for k in kernels:
            r = by.get(k) or {}
            ratio = r.get("ratio")
            line.append(f(r.get("gbps"), 1) + (f" ({100 * ratio:.0f}%)" if isinstance(ratio, (int, float)) else ""))
        shares = [r.get("cpu_share") for r in by.values() if isinstance(r.get("cpu_share"), (int, float))]
        line.append(f(100 * min(shares), 0, "%") if shares else "-")
        pivot.append(line)
    out.append(table(["set", "threads", "read GB/s"] + [f"{html.escape(str(k))} GB/s (of read)" for k in kernels]
                     + ["lowest CPU share"], pivot, "median GB/s; a CPU share under 90% means a starved run (shared host)"))
    return "\n".join(out)


def e2e_summary_from_runs(runs):
    """e2e.py's summary shape, computed from the runs when the JSON has none."""
    import statistics

    def spread(values):
        values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)} if values else None
    out = []
    for pinned in sorted({r.get("pinned") for r in runs}, key=lambda v: (v is None, bool(v))):
        for k in sorted({r.get("keyspace") for r in runs if isinstance(r.get("keyspace"), (int, float))}):
            s = {"pinned": pinned, "keyspace": k}
            for m in sorted({r.get("mode") for r in runs}, key=str):
                mine = [r for r in runs if r.get("pinned") == pinned and r.get("keyspace") == k and r.get("mode") == m]
                if mine:
                    s[m] = {key: spread(r.get(key) for r in mine) for key in
                            ("rps", "bytesPerRequest", "identicalPct", "syncsPerSecond", "pauseP50Ms", "pauseP99Ms",
                             "commitP50Us", "commitP99Us")}
            out.append(s)
    return out


def figures_e2e(d):
    out = []
    setup = d.get("setup") if isinstance(d.get("setup"), dict) else {}
    if setup:
        keys = ["guestMemory", "vcpus", "accel", "hostCores", "requests", "rounds", "latencyRequests", "keyspaces", "modes"]
        out.append("<p>" + ", ".join(f"{k} {html.escape(json.dumps(setup[k]))}" for k in keys if k in setup) + "</p>")
    runs = [r for r in d.get("runs", []) if isinstance(r, dict)] if isinstance(d.get("runs"), list) else []
    summary = d.get("summary") if isinstance(d.get("summary"), list) and d.get("summary") else e2e_summary_from_runs(runs)
    rows = []
    for s in summary:
        if not isinstance(s, dict):
            continue

        def g(mode, key):
            return (s.get(mode) or {}).get(key) if isinstance(s.get(mode), dict) else None
        rows.append([{True: "pinned", False: "unpinned"}.get(s.get("pinned"), "-"), f(s.get("keyspace"), 0),
                     spread_text(g("unreplicated", "rps")), spread_text(g("plover", "rps")), spread_text(g("checkpoint", "rps")),
                     spread_text(s.get("ploverOverUnreplicated"), 2), spread_text(s.get("ploverOverCheckpoint"), 2),
                     spread_text(g("plover", "bytesPerRequest")), spread_text(g("checkpoint", "bytesPerRequest")),
                     spread_text(g("plover", "identicalPct")), spread_text(g("plover", "syncsPerSecond")),
                     spread_text(g("plover", "pauseP50Ms"), 1) + " / " + spread_text(g("plover", "pauseP99Ms"), 1),
                     spread_text(g("checkpoint", "pauseP50Ms"), 1) + " / " + spread_text(g("checkpoint", "pauseP99Ms"), 1),
                     spread_text(g("plover", "commitP50Us")) + " / " + spread_text(g("plover", "commitP99Us"))])
    if rows:
        out.append(table(["pinning", "R", "req/s unrepl.", "req/s Plover", "req/s checkpoint", "Plover/unrepl.",
                          "Plover/ckpt", "B/req Plover", "B/req ckpt", "identical % Plover", "syncs/s Plover",
                          "pause p50/p99 ms Plover", "pause p50/p99 ms ckpt", "commit p50/p99 us Plover"], rows,
                         "median over rounds (min-max); ratios computed within each round"))
    lat = d.get("latencySummary")
    if isinstance(lat, list) and lat:
        lrows = []
        for row in lat:
            if not isinstance(row, dict):
                continue
            for m in ("unreplicated", "plover", "checkpoint"):
                if isinstance(row.get(m), dict):
                    lrows.append([{True: "pinned", False: "unpinned"}.get(row.get("pinned"), "-"), m,
                                  spread_text(row[m].get("p50Ms"), 3), spread_text(row[m].get("p99Ms"), 3),
                                  spread_text(row.get(f"{m}P50OverUnreplicated"), 1)])
        out.append(table(["pinning", "mode", "p50 ms", "p99 ms", "p50 over unreplicated"], lrows,
                         "one client, one request at a time"))
    elif isinstance(d.get("latency"), list) and d["latency"]:
        out.append(table(["pinning", "mode", "round", "p50 ms", "p99 ms", "samples"],
                         [[{True: "pinned", False: "unpinned"}.get(r.get("pinned"), "-"), html.escape(str(r.get("mode"))),
                           f(r.get("round"), 0), f(r.get("p50Ms"), 3), f(r.get("p99Ms"), 3), f(r.get("samples"), 0)]
                          for r in d["latency"] if isinstance(r, dict)], "one client, one request at a time"))
    out.append(targets_table(d.get("targets")))
    return "\n".join(out)


def figures_disk(d):
    out = []
    setup = d.get("setup") if isinstance(d.get("setup"), dict) else {}
    if setup:
        keys = ["guestArgs", "diskImage", "rounds", "seconds", "load", "pin", "hostCores"]
        out.append("<p>" + ", ".join(f"{k} {html.escape(json.dumps(setup[k]))}" for k in keys if k in setup) + "</p>")
    s = d.get("summary") if isinstance(d.get("summary"), dict) else {}
    disk = s.get("disk") if isinstance(s.get("disk"), dict) else {}
    nodisk = s.get("nodisk") if isinstance(s.get("nodisk"), dict) else {}
    if disk:
        out.append(table(["per sync", "dirty blocks (primary)", "union blocks", "identical %", "divergent blocks",
                          "disk frames KiB", "block data KiB", "every dirty block KiB", "checkpoint / Plover"],
                         [["disk run", spread_text(disk.get("diskDirtyBlocksPerSync"), 1), spread_text(disk.get("diskUnionBlocksPerSync"), 1),
                           spread_text(disk.get("diskIdenticalPct"), 1), spread_text(disk.get("diskDivergentBlocksPerSync"), 1),
                           spread_text(disk.get("diskWireBytesPerSync"), 1, 1 / 1024), spread_text(disk.get("diskBlockBytesPerSync"), 1, 1 / 1024),
                           spread_text(disk.get("checkpointDiskBytesPerSync"), 1, 1 / 1024),
                           spread_text(disk.get("checkpointOverPloverDiskBytes"), 2)]],
                         "the disk part of the syncs, median over rounds (min-max)"))
    rows = [[name, spread_text(v.get("pauseP50Ms"), 2), spread_text(v.get("pauseP99Ms"), 2), spread_text(v.get("syncP50Ms"), 2),
             spread_text(v.get("syncsPerSecond"), 1), spread_text(v.get("diskStepsP50Ms"), 2)]
            for name, v in (("with the disk", disk), ("without (RAM only)", nodisk)) if v]
    if rows:
        out.append(table(["cluster", "guest pause p50 ms", "p99 ms", "sync p50 ms", "syncs/s", "disk steps p50 ms"], rows,
                         "pauses, median over rounds (min-max)"))
    if isinstance(s.get("pauseAddedP50Ms"), dict):
        out.append(f"<p>pause added by the disk (p50, within each round): {spread_text(s['pauseAddedP50Ms'], 2)} ms, "
                   f"{spread_text(s.get('pauseP50DiskOverNodisk'), 2)}x</p>")
    return "\n".join(out)


def figures_other(d):
    scalars = [(k, v) for k, v in d.items() if isinstance(v, (str, int, float, bool)) or v is None]
    return table(["field", "value"], [[html.escape(k), html.escape(str(v))] for k, v in scalars[:40]]) if scalars else ""


FIGURES = {"sync": figures_sync, "consensus": figures_consensus, "hash": figures_hash, "e2e": figures_e2e, "disk": figures_disk}
TITLES = {"hash": "Page hashing (bench hash)", "consensus": "Consensus (bench consensus)",
          "sync": "syncvm (bench sync)", "e2e": "Replicated Redis end to end (bench e2e)",
          "disk": "A guest writing a replicated disk (bench disk)"}

CSS = """
body { font-family: sans-serif; margin: 2em; max-width: 1400px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
caption { text-align: left; font-style: italic; padding-bottom: 0.3em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; max-width: 1100px; }
.ok { color: #070; } .bad { color: #b00; font-weight: bold; } .note { color: #666; font-size: 0.9em; }
pre { background: #f8f8f8; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
"""


def figure_html(path, caption, stale):
    with open(path, "rb") as fh:
        data = base64.b64encode(fh.read()).decode()
    name = os.path.basename(path)
    warn = ' <span class="bad">(older than its JSON: from an earlier run)</span>' if stale else ""
    return (f'<figure id="{html.escape(name)}"><img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'
            f'<figcaption><a href="{html.escape(name)}">{html.escape(name)}</a>{warn}: {html.escape(caption)}'
            f'</figcaption></figure>')


def build_html(out_dir, captions, notes):
    """Writes out_dir/report.html from every *.json and *.png there; returns its path."""
    files = sorted(os.listdir(out_dir))
    jsons = [x for x in files if x.endswith(".json")]
    pngs = [x for x in files if x.endswith(".png")]
    now = datetime.datetime.now(datetime.timezone.utc)
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Plover benchmarks</title><style>{CSS}</style>"
             f"</head><body>\n<h1>Plover benchmarks</h1>\n<p class=\"note\">Built {stamp(now)} by ./build.sh bench report "
             f"from {html.escape(out_dir)}.</p>"]
    found = [[f'<a href="#{html.escape(x)}">{html.escape(x)}</a>' if x.endswith(".png") else html.escape(x),
              stamp(mtime(os.path.join(out_dir, x))), f(os.path.getsize(os.path.join(out_dir, x)) / 1024, 1, " KiB")]
             for x in jsons + pngs]
    missing = [b for b in BENCHES if f"{b}.json" not in jsons]
    parts.append("<h2>Files found</h2>" + (table(["file", "modified", "size"], found) if found else "<p>none</p>"))
    if missing:
        parts.append("<p class=\"note\">Not found (run <code>./build.sh bench NAME</code>): " +
                     ", ".join(f"{b}.json" for b in missing) + "</p>")
    shown = set()
    names = [b for b in BENCHES if f"{b}.json" in jsons] + [x[:-5] for x in jsons if x[:-5] not in BENCHES]
    if names:
        parts.insert(1, "<p>Contents: " + " · ".join(f'<a href="#{html.escape(n)}">{html.escape(TITLES.get(n, n + ".json"))}</a>'
                                                    for n in names) + "</p>")
    for name in names:
        path = os.path.join(out_dir, f"{name}.json")
        data, err = load_json(path)
        parts.append(f"<h2 id=\"{html.escape(name)}\">{html.escape(TITLES.get(name, name + '.json'))}</h2>"
                     f"<p class=\"note\">{html.escape(name)}.json, written {stamp(mtime(path))}</p>")
        if err:
            parts.append(f'<p class="bad">{html.escape(err)}</p>')
        else:
            try:
                parts.append(FIGURES.get(name, figures_other)(data))
            except Exception:
                parts.append(f'<p class="bad">key figures failed:</p><pre>{html.escape(traceback.format_exc())}</pre>')
        for n in notes.get(name, []):
            parts.append(f'<p class="note">{html.escape(n)}</p>')
        json_time = mtime(path)
        # the plotter's order (it draws the overview first), then any others alphabetically
        order = {png: i for i, png in enumerate(captions)}
        for png in sorted((x for x in pngs if x.startswith(name + "-")), key=lambda x: (order.get(x, len(order)), x)):
            p = os.path.join(out_dir, png)
            parts.append(figure_html(p, captions.get(png, ""), mtime(p) < json_time))
            shown.add(png)
    rest = [x for x in pngs if x not in shown]
    if rest:
        parts.append("<h2>Other plots</h2><p class=\"note\">PNG files whose benchmark JSON is not here.</p>")
        parts += [figure_html(os.path.join(out_dir, x), captions.get(x, ""), False) for x in rest]
    parts.append("</body></html>\n")
    path = os.path.join(out_dir, "report.html")
    with open(path + ".tmp", "w") as fh:
        fh.write("\n".join(parts))
    os.replace(path + ".tmp", path)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=default_dir(), help="the benchmarks' output directory (default: %(default)s)")
    ap.add_argument("--plot", action="append", choices=BENCHES, help="plot only this benchmark (repeatable)")
    ap.add_argument("--no-html", action="store_true", help="do not write report.html")
    args = ap.parse_args(argv)
    out_dir = os.path.abspath(args.dir)
    if not os.path.isdir(out_dir):
        print(f"report: {out_dir} does not exist (run a benchmark first: ./build.sh bench NAME)", file=sys.stderr)
        return 1
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"report: matplotlib is not installed for {sys.executable} (Debian: apt-get install python3-matplotlib, "
              f"for /usr/bin/python3; ./build.sh bench report installs it)", file=sys.stderr)
        return EXIT_NO_MATPLOTLIB
    sys.path.insert(0, HERE)
    captions, notes, failed = {}, {}, 0
    for name in args.plot or BENCHES:
        path = os.path.join(out_dir, f"{name}.json")
        if not os.path.exists(path):
            if args.plot:
                print(f"report: no {path}: nothing to plot", file=sys.stderr)
                failed += 1
            continue
        result, err = plot(name, path, out_dir)
        if err:
            print(f"report: {name}.json: {err}", file=sys.stderr)
            notes.setdefault(name, []).append(f"plots failed: {err.splitlines()[0]}")
            failed += 1
            continue
        for png, caption in result.written:
            captions[os.path.basename(png)] = caption
            print(f"wrote {png}")
        for why in result.skipped:
            print(f"  skipped {why}")
            notes.setdefault(name, []).append(f"skipped {why}")
    if not args.no_html:
        print(f"wrote {build_html(out_dir, captions, notes)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
