"""Plots of the benchmarks' JSON files (matplotlib, Agg backend; Debian's python3-matplotlib under /usr/bin/python3).

One function per benchmark, PLOTTERS[name](data, out_dir) -> Plots: the PNG files it wrote beside the JSON
(out_dir/NAME-WHAT.png), each with a caption, and the plots it skipped with the reason (a field missing, no rows).
Every plotter reads its JSON defensively: a missing or odd field skips that plot, never the others.
"""
import math
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

DPI = 110
MODE_COLORS = {"unreplicated": "#7f7f7f", "plover": "#1f77b4", "checkpoint": "#ff7f0e", "remus": "#ff7f0e"}
MODE_ORDER = ["unreplicated", "plover", "checkpoint", "remus"]
# Pause components, in the order a sync runs them (sync.json: snake_case, e2e.json: the admin socket's camelCase).
PAUSE_PARTS = ["stop", "bitmap", "snapshot", "hash", "compare", "sub_blocks", "subBlocks", "transfer", "device_state", "deviceState",
               "apply", "resume"]
PART_COLORS = {"stop": "#8c564b", "bitmap": "#e377c2", "hash": "#1f77b4", "compare": "#17becf", "sub_blocks": "#aec7e8",
               "subBlocks": "#aec7e8", "transfer": "#ff7f0e",
               "device_state": "#bcbd22", "deviceState": "#bcbd22", "apply": "#2ca02c", "resume": "#9467bd",
               "other": "#c7c7c7"}
CHANNEL_COLORS = {"consensus": "#9467bd", "synclink": "#2ca02c", "observer": "#c7c7c7"}


class Plots:
    """What one plotter produced: written [(path, caption)] and skipped [reason]."""

    def __init__(self, bench):
        self.bench = bench
        self.written = []
        self.skipped = []

    def skip(self, what, why):
        self.skipped.append(f"{self.bench}-{what}: {why}")

    def save(self, fig, out_dir, what, caption):
        path = os.path.join(out_dir, f"{self.bench}-{what}.png")
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        plt.close(fig)
        self.written.append((path, caption))


# ---------------------------------------------------------------- helpers

def num(v):
    """v as a float, or None when it is not a finite number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def median(values):
    values = [v for v in (num(x) for x in values) if v is not None]
    return statistics.median(values) if values else None


def spread(values):
    """(median, min, max) of the numbers among values, or None."""
    values = [v for v in (num(x) for x in values) if v is not None]
    return (statistics.median(values), min(values), max(values)) if values else None


def mode_sort(modes):
    return sorted(modes, key=lambda m: (MODE_ORDER.index(m) if m in MODE_ORDER else len(MODE_ORDER), str(m)))


def mode_label(mode):
    return {"remus": "checkpoint (Remus mode)"}.get(mode, str(mode))


def pin_label(pinned):
    return {True: "pinned (one core per host)", False: "unpinned (every process on both cores)"}.get(pinned, "all runs")


def keyspace_label(r):
    r = num(r)
    if r is None:
        return "R=?"
    return f"R={int(r):,}" if r < 1e6 else f"R=1e{round(math.log10(r))}"


def pause_parts(breakdown):
    """[(part, value)] of a pause breakdown dict in the order syncs run them, unknown parts after, no total."""
    if not isinstance(breakdown, dict):
        return []
    known = [k for k in PAUSE_PARTS if k in breakdown]
    # not parts of their own: the guest's stop, the main thread's waits, the device load (in apply), the disk steps
    # and their read (inside bitmap, hash, transfer and apply)
    rest = sorted(k for k in breakdown if k not in known and k not in ("total", "guest", "mainWait", "deviceLoad", "disk", "diskRead"))
    return [(k, num(breakdown[k]) or 0.0) for k in known + rest]


def part_label(part):
    return {"device_state": "device state", "deviceState": "device state", "sub_blocks": "sub-blocks",
            "subBlocks": "sub-blocks"}.get(part, part)


def fmt_si(v, unit=""):
    v = num(v)
    if v is None:
        return "-"
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:.3g} {prefix}{unit}".rstrip()
    return f"{v:.3g} {unit}".rstrip()


# ---------------------------------------------------------------- sync.json

def _sync_steps(rows):
    """Grid and target rows grouped by (memory, dirty pages, divergent %), in file order: [(key, {mode: row})]."""
    steps = {}
    for r in rows:
        if r.get("kind") not in ("grid", "target"):
            continue
        key = (str(r.get("memory", "?")), r.get("kind"), num(r.get("dirty_pages")), num(r.get("divergent_pct")))
        steps.setdefault(key, {})[r.get("mode", "?")] = r
    return list(steps.items())


def _step_label(key):
    _, kind, dirty, div = key
    label = f"{int(dirty):,} dirty\n{div:.0f}% div." if dirty is not None and div is not None else "?"
    return ("target\n" if kind == "target" else "") + label


def plot_sync(data, out_dir):
    p = Plots("sync")
    rows = data.get("rows") if isinstance(data.get("rows"), list) else []
    steps = _sync_steps([r for r in rows if isinstance(r, dict)])
    memories = list(dict.fromkeys(k[0] for k, _ in steps))
    modes = mode_sort({m for _, by in steps for m in by})
    widest = max([sum(1 for k, _ in steps if k[0] == m) for m in memories] or [1])
    if not steps:
        p.skip("pause", "no grid or target rows")
        p.skip("bytes", "no grid or target rows")
    else:
        # Pause breakdown: one panel per guest memory size, per step one stacked bar per mode.
        fig, axes = plt.subplots(len(memories), 1, figsize=(max(8, 1.1 * widest + 3), 4 * len(memories)), squeeze=False,
                                 layout="constrained")
        width = 0.8 / max(1, len(modes))
        hatches = {m: ("" if i == 0 else "//") for i, m in enumerate(modes)}
        used = []
        for ax, memory in zip(axes[:, 0], memories):
            mine = [(k, by) for k, by in steps if k[0] == memory]
            for x, (key, by) in enumerate(mine):
                for j, mode in enumerate(modes):
                    r = by.get(mode)
                    if r is None:
                        continue
                    parts = pause_parts(r.get("pause_ms_breakdown"))
                    bottom = 0.0
                    for part, v in parts:
                        ax.bar(x - 0.4 + width * (j + 0.5), v, width, bottom=bottom, color=PART_COLORS.get(part, "#aaaaaa"),
                               hatch=hatches[mode], edgecolor="white", linewidth=0.3)
                        bottom += v
                        if part not in used:
                            used.append(part)
                    total = num(r.get("pause_ms_median"))
                    if total is not None and total > bottom * 1.02:   # what the parts do not account for
                        ax.bar(x - 0.4 + width * (j + 0.5), total - bottom, width, bottom=bottom, color=PART_COLORS["other"],
                               hatch=hatches[mode], edgecolor="white", linewidth=0.3)
                        if "other" not in used:
                            used.append("other")
            ax.set_xticks(range(len(mine)))
            ax.set_xticklabels([_step_label(k) for k, _ in mine], fontsize=8)
            ax.set_ylabel("primary's pause (ms, median)")
            ax.set_title(f"{memory} guest memory", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        handles = [Patch(facecolor=PART_COLORS.get(u, "#aaaaaa"), label=part_label(u)) for u in used]
        handles += [Patch(facecolor="white", edgecolor="black", hatch=hatches[m], label=mode_label(m)) for m in modes]
        axes[0, 0].legend(handles=handles, fontsize=8, ncol=2, loc="upper left")
        fig.suptitle("syncvm pause breakdown per step (left bar Plover, hatched bar the checkpointing baseline)")
        p.save(fig, out_dir, "pause", "Where the primary's pause goes, per grid step: stacked components (median sync), "
                                      "Plover beside the checkpointing baseline (same engine sending every dirty page).")

        # Bytes on the wire: Plover vs the baseline, log scale, with the baseline's multiple.
        fig, axes = plt.subplots(len(memories), 1, figsize=(max(8, 1.1 * widest + 3), 3.6 * len(memories)), squeeze=False,
                                 layout="constrained")
        for ax, memory in zip(axes[:, 0], memories):
            mine = [(k, by) for k, by in steps if k[0] == memory]
            for x, (key, by) in enumerate(mine):
                values = {}
                for j, mode in enumerate(modes):
                    v = num((by.get(mode) or {}).get("wire_bytes"))
                    if v is None or v <= 0:
                        continue
                    values[mode] = v
                    ax.bar(x - 0.4 + width * (j + 0.5), v / 2**20, width, color=MODE_COLORS.get(mode, "#aaaaaa"),
                           label=mode_label(mode) if x == 0 else None)
                base = [m for m in modes if m != "plover" and m in values]
                if "plover" in values and base:
                    ax.text(x, max(values.values()) / 2**20 * 1.15, f"x{values[base[0]] / values['plover']:.1f}",
                            ha="center", fontsize=8)
            ax.set_yscale("log")
            ax.set_ylim(top=ax.get_ylim()[1] * 2)   # room for the xN labels
            ax.set_xticks(range(len(mine)))
            ax.set_xticklabels([_step_label(k) for k, _ in mine], fontsize=8)
            ax.set_ylabel("bytes on the wire per sync (MiB)")
            ax.set_title(f"{memory} guest memory", fontsize=10)
            ax.grid(axis="y", alpha=0.3, which="both")
            ax.legend(fontsize=8, loc="upper left")
        fig.suptitle("syncvm bytes per sync: Plover vs checkpointing (xN: the baseline's multiple)")
        p.save(fig, out_dir, "bytes", "Bytes on the wire per sync (all frames, device state included), Plover vs the "
                                      "checkpointing baseline, per grid step; xN is the baseline over Plover.")
    _plot_sync_subblocks([r for r in rows if isinstance(r, dict) and r.get("kind") == "subblocks"], out_dir, p)
    _plot_sync_scale(data, out_dir, p)
    return p


def _plot_sync_subblocks(rows, out_dir, p):
    """The target point at each sub-block size: bytes on the wire, and the pause with and without the backup's
    divergence comparison."""
    rows = [r for r in rows if num(r.get("sub_block_bytes")) is not None]
    if not rows:
        p.skip("subblocks", "no \"subblocks\" rows")
        return
    sizes = sorted({num(r["sub_block_bytes"]) for r in rows})
    labels = ["whole pages" if b == 0 else f"{int(b)} B" for b in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained")
    width = 0.38
    for x, b in enumerate(sizes):
        mine = [r for r in rows if num(r["sub_block_bytes"]) == b]
        r = next((r for r in mine if r.get("record_divergence")), mine[0])
        parts = [("page data", num(r.get("page_bytes")) or 0, "#ff7f0e"), ("hashes", num(r.get("hash_bytes")) or 0, "#1f77b4"),
                 ("bitmaps", num(r.get("bitmap_bytes")) or 0, "#e377c2"), ("device state", num(r.get("device_state_bytes")) or 0, "#bcbd22")]
        rest = (num(r.get("wire_bytes")) or 0) - sum(v for _, v, _ in parts)
        parts.append(("control, headers", max(0.0, rest), "#c7c7c7"))
        bottom = 0.0
        for name, v, color in parts:
            left.bar(x, v / 2**20, 0.6, bottom=bottom, color=color, label=name if x == 0 else None)
            bottom += v / 2**20
        left.text(x, bottom, f"{bottom:.2f}", ha="center", va="bottom", fontsize=8)
        for j, record in enumerate((True, False)):
            r = next((r for r in mine if bool(r.get("record_divergence")) == record), None)
            if r is None:
                continue
            bottom = 0.0
            for part, v in pause_parts(r.get("pause_ms_breakdown")):
                right.bar(x - 0.2 + 0.4 * j, v, width, bottom=bottom, color=PART_COLORS.get(part, "#aaaaaa"),
                          hatch="" if record else "//", edgecolor="white", linewidth=0.3,
                          label=part_label(part) if x == 0 and j == 0 else None)
                bottom += v
    for ax in (left, right):
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels(labels)
        ax.set_xlabel("sub-block size (divergent pages are sent as the sub-blocks that differ)")
        ax.grid(axis="y", alpha=0.3)
    left.set_ylabel("bytes on the wire per sync (MiB)")
    left.legend(fontsize=8)
    right.set_ylabel("primary's pause (ms, median)")
    handles, names = right.get_legend_handles_labels()
    handles += [Patch(facecolor="white", edgecolor="black", label="backup compares pages"),
                Patch(facecolor="white", edgecolor="black", hatch="//", label="no comparison")]
    right.legend(handles=handles, fontsize=7, ncol=2)
    r0 = rows[0]
    fig.suptitle(f"the target point ({int(num(r0.get('dirty_pages')) or 0):,} dirty pages, "
                 f"{num(r0.get('divergent_pct')) or 0:.0f}% divergent) by sub-block size")
    p.save(fig, out_dir, "subblocks", "Bytes per sync by kind and the primary's pause at each sub-block size, with "
                                      "and without the backup's divergence comparison (hatched: without).")


# Field names of sync.json's "scale" section (see tests-native/bench/sync/Program.cs): rows with the guest memory,
# the dirty page count, the hashing threads, the mode, the pause and the bytes. Several spellings are accepted.
SCALE_X = {"memory": ["memory_gib", "ram_gib", "gib", "memory"], "dirty": ["dirty_pages", "dirty"],
           "threads": ["hash_threads", "threads", "hashing_threads"]}
SCALE_Y = {"pause": ["pause_ms_median", "pause_ms", "pauseMs"], "bytes": ["wire_bytes", "bytes", "wireBytes"]}


def _field(row, names):
    for n in names:
        if n in row:
            return row[n]
    return None


def _gib(v):
    """Guest memory as GiB: a number, or a string such as '4 GiB'."""
    if isinstance(v, str):
        try:
            return float(v.split()[0])
        except ValueError:
            return None
    return num(v)


def _scale_rows(data):
    s = data.get("scale")
    if isinstance(s, dict):
        s = s.get("rows", s.get("points"))
    return [r for r in s if isinstance(r, dict)] if isinstance(s, list) else None


def _plot_sync_scale(data, out_dir, p):
    rows = _scale_rows(data)
    if rows is None:
        p.skip("scale", "no \"scale\" section in sync.json")
        return
    points = []
    for r in rows:
        mem, dirty, threads = _gib(_field(r, SCALE_X["memory"])), num(_field(r, SCALE_X["dirty"])), _field(r, SCALE_X["threads"])
        pause, wire = num(_field(r, SCALE_Y["pause"])), num(_field(r, SCALE_Y["bytes"]))
        if mem is None or dirty is None:
            continue
        mode = r.get("mode", "plover")
        if mode in ("checkpoint", "remus"):
            threads = "no hashing"      # the baseline sends every dirty page: its thread count means nothing
        elif num(threads) == 0:
            threads = f"all {int(num(r.get('cores')))} cores" if num(r.get("cores")) else "all cores"
        elif num(threads) is not None:
            threads = f"{int(num(threads))} hashing thread{'s' if num(threads) != 1 else ''}"
        points.append({"mem": mem, "dirty": dirty, "threads": threads, "mode": mode, "pause": pause, "bytes": wire})
    if not points:
        p.skip("scale", "no scale row has a memory size and a dirty page count")
        return
    threads = sorted({str(x["threads"]) for x in points}, key=lambda t: (t.startswith("no"), t.startswith("all"), t))
    modes = mode_sort({x["mode"] for x in points})
    dirties = sorted({x["dirty"] for x in points})
    mems = sorted({x["mem"] for x in points})
    markers = dict(zip(modes, "osD^v<>"))
    styles = dict(zip(threads, ["-", "--", ":", "-."] * 4))
    for what, ylabel, scale in (("pause", "pause (ms, median)", 1.0), ("bytes", "bytes on the wire per sync (MiB)", 1 / 2**20)):
        if not any(x[what] is not None for x in points):
            p.skip(f"scale-{what}", f"no scale row has a {what} figure")
            continue
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
        # left: against guest memory, a curve per dirty count; right: against dirty pages, a curve per memory size.
        # Colour: that series; line style: hashing threads; marker: mode.
        for ax, xkey, series_key, xlabel in ((axes[0], "mem", "dirty", "guest memory (GiB)"),
                                             (axes[1], "dirty", "mem", "dirty pages per sync")):
            series = dirties if series_key == "dirty" else mems
            color = {sv: plt.cm.viridis(0.9 * i / max(1, len(series) - 1)) for i, sv in enumerate(series)}
            for sv in series:
                for t in threads:
                    for m in modes:
                        pts = sorted((x[xkey], x[what] * scale) for x in points if x[series_key] == sv and str(x["threads"]) == t
                                     and x["mode"] == m and x[what] is not None)
                        if pts:
                            ax.plot([a for a, _ in pts], [b for _, b in pts], marker=markers[m], linestyle=styles[t],
                                    color=color[sv], markersize=5)
            ax.set_xscale("log", base=2 if xkey == "mem" else 10)
            if xkey == "mem":
                ax.set_xticks(mems)
                ax.set_xticklabels([f"{m:g}" for m in mems])
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, which="both")
            handles = [Line2D([], [], color=color[sv], label=f"{int(sv):,} dirty pages" if series_key == "dirty" else f"{sv:g} GiB")
                       for sv in series]
            handles += [Line2D([], [], color="black", linestyle=styles[t], label=t) for t in threads]
            if len(modes) > 1:
                handles += [Line2D([], [], color="black", marker=markers[m], linestyle="", label=mode_label(m)) for m in modes]
            ax.legend(handles=handles, fontsize=7)
        fig.suptitle(f"syncvm {what} against guest memory (left) and dirty pages (right)")
        p.save(fig, out_dir, f"scale-{what}", f"How the sync's {what} grows with guest memory (left) and with the dirty "
                                               f"page count (right); line style: hashing threads.")


# ---------------------------------------------------------------- consensus.json

CONSENSUS_LATENCY = [("64x1", "64 B, 1 client"), ("1500x1", "1500 B, 1 client"), ("64x16", "64 B, 16 clients"),
                     ("1500x16", "1500 B, 16 clients")]


def _cdf_points(row):
    """(latencies us, quantiles) from a row's "cdf", else from its percentiles (coarse), else None; and whether coarse."""
    cdf = row.get("cdf") if isinstance(row, dict) else None
    if isinstance(cdf, dict) and isinstance(cdf.get("q"), list) and isinstance(cdf.get("us"), list):
        pts = [(num(u), num(q)) for q, u in zip(cdf["q"], cdf["us"])]
        pts = [(u, q) for u, q in pts if u is not None and q is not None and u > 0]
        if len(pts) >= 2:
            return [u for u, _ in pts], [q for _, q in pts], False
    if isinstance(row, dict):
        pts = [(num(row.get(k)), q) for k, q in (("p50_us", 0.5), ("p99_us", 0.99), ("p999_us", 0.999), ("max_us", 1.0))]
        pts = [(u, q) for u, q in pts if u is not None and u > 0]
        if pts:
            return [u for u, _ in pts], [q for _, q in pts], True
    return None


def plot_consensus(data, out_dir):
    p = Plots("consensus")
    latency = data.get("latency") if isinstance(data.get("latency"), dict) else {}
    rtt = data.get("raw_rtt") if isinstance(data.get("raw_rtt"), dict) else {}
    curves = []
    colors = plt.cm.tab10.colors
    for i, (key, label) in enumerate(CONSENSUS_LATENCY + [(k, None) for k in latency if k not in dict(CONSENSUS_LATENCY)]):
        pts = _cdf_points(latency.get(key))
        if pts:
            curves.append((f"commit {label or key}", pts, dict(color=colors[i % 10])))
    for i, size in enumerate(sorted(rtt, key=lambda s: num(s) if isinstance(s, (int, float)) else int(s) if str(s).isdigit() else 0)):
        pts = _cdf_points(rtt.get(size))
        if pts:
            curves.append((f"raw TCP RTT {size} B", pts, dict(color="black", linestyle="--" if i == 0 else ":")))
    if not curves:
        p.skip("cdf", "no latency row with a \"cdf\" or percentiles")
    else:
        fig, (ax, tail) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
        coarse = False
        for label, (us, q, is_coarse), style in curves:
            coarse |= is_coarse
            # CDF points: a step function; percentiles only: markers joined by lines (a coarse outline)
            kw = {**style, **({"marker": "o"} if is_coarse else {"drawstyle": "steps-post"})}
            ax.plot(us, q, label=label + (" (percentiles)" if is_coarse else ""), **kw)
            tq = [(u, 1 - x) for u, x in zip(us, q) if 1 - x > 0]
            if tq:
                tail.plot([u for u, _ in tq], [x for _, x in tq], **kw)
        ax.set_xscale("log")
        ax.set_xlabel("latency (us)")
        ax.set_ylabel("fraction of inputs at most this latency")
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title("commit latency CDF (proposal to commit) vs raw RTT", fontsize=10)
        tail.set_xscale("log")
        tail.set_yscale("log")
        tail.set_xlabel("latency (us)")
        tail.set_ylabel("fraction of inputs slower than this")
        tail.grid(alpha=0.3, which="both")
        tail.set_title("the tail (1 - CDF)", fontsize=10)
        host = data.get("host") if isinstance(data.get("host"), dict) else {}
        load = " ".join(str(x) for x in host.get("loadavg", [])) if isinstance(host.get("loadavg"), list) else "?"
        fig.suptitle(f"consensus: 3 processes on loopback TCP ({host.get('cpus', '?')} CPUs, load {load})")
        p.save(fig, out_dir, "cdf", "Commit latency CDF per workload (leader's proposal to commit), against the raw "
                                    "transport round trip (dashed)." + (" Workloads without CDF points in the JSON are "
                                                                        "drawn from their percentiles only." if coarse else ""))
    # throughput of every workload
    rows = [(f"commit {label}", latency.get(key)) for key, label in CONSENSUS_LATENCY]
    tput = data.get("throughput") if isinstance(data.get("throughput"), dict) else {}
    rows += [(f"batched {k} B", v) for k, v in tput.items()]
    rows = [(label, num(r.get("per_second"))) for label, r in rows if isinstance(r, dict) and num(r.get("per_second"))]
    if not rows:
        p.skip("throughput", "no workload with per_second")
    else:
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5), layout="constrained")
        ax.barh(range(len(rows)), [v for _, v in rows], color=["#1f77b4"] * (len(rows) - len(tput)) + ["#2ca02c"] * len(tput))
        for i, (_, v) in enumerate(rows):
            ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
        target = ((data.get("targets") or {}).get("throughput_ge_200k") or {}).get("target") if isinstance(data.get("targets"), dict) else None
        if num(target):
            ax.axvline(target, color="red", linestyle="--", linewidth=1, label=f"target {target:,.0f}/s (batched 64 B)")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([label for label, _ in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("committed inputs per second")
        ax.grid(axis="x", alpha=0.3)
        fig.suptitle("consensus throughput per workload")
        p.save(fig, out_dir, "throughput", "Committed inputs per second of each workload (1 or 16 clients with one "
                                           "input outstanding; batched: 16 clients with many outstanding).")
    return p


# ---------------------------------------------------------------- hash.json

def plot_hash(data, out_dir):
    p = Plots("hash")
    rows = [r for r in data.get("results", []) if isinstance(r, dict)] if isinstance(data.get("results"), list) else []
    rows = [r for r in rows if num(r.get("gbps")) is not None and r.get("set") is not None]
    if not rows:
        p.skip("throughput", "no results with gbps")
        return p
    sets = list(dict.fromkeys(r["set"] for r in rows))
    kernels = list(dict.fromkeys(r.get("kernel") for r in rows if r.get("kernel") != "read"))
    threads = sorted({r.get("threads") for r in rows}, key=lambda t: num(t) or 0)
    size = num(data.get("seq_bytes"))
    size = "?" if size is None else f"{size / 2**30:g} GiB" if size >= 2**30 else f"{size / 2**20:g} MiB"
    set_names = {"l2": "cache-resident (L2)", "seq": f"{size} in address order", "dirty25": f"{size}, 25% dirty via the bitmap"}
    starved = False
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets) + 1, 4.6), squeeze=False, sharey=False, layout="constrained")
    width = 0.8 / max(1, len(kernels))
    colors = plt.cm.tab10.colors
    for ax, s in zip(axes[0], sets):
        for x, t in enumerate(threads):
            for j, k in enumerate(kernels):
                r = next((r for r in rows if r["set"] == s and r.get("threads") == t and r.get("kernel") == k), None)
                if r:
                    low = (num(r.get("cpu_share")) or 1.0) < 0.9
                    starved |= low
                    ax.bar(x - 0.4 + width * (j + 0.5), r["gbps"], width, color=colors[j % 10], label=k if x == 0 else None,
                           hatch="xx" if low else "", edgecolor="white" if low else None)
            read = next((r for r in rows if r["set"] == s and r.get("threads") == t and r.get("kernel") == "read"), None)
            if read:
                ax.hlines(read["gbps"], x - 0.45, x + 0.45, color="black", linewidth=2,
                          label="memory read (the limit)" if x == 0 else None)
        ax.set_xticks(range(len(threads)))
        ax.set_xticklabels([f"{t} thread{'s' if t != 1 else ''}" for t in threads])
        ax.set_title(set_names.get(s, s), fontsize=10)
        ax.set_ylabel("GB/s hashed (median)")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if starved:
        handles.append(Patch(facecolor="#888888", hatch="xx", edgecolor="white", label="under 90% of its CPU time (shared host)"))
        labels.append(handles[-1].get_label())
    fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=8, bbox_to_anchor=(0.5, -0.08))
    fig.suptitle(f"page hashing throughput per kernel and thread count ({os.path.basename(str(data.get('variant', '?')))}, "
                 f"{data.get('threads_all', '?')} threads = all)")
    p.save(fig, out_dir, "throughput", "Page hashing throughput of every kernel, 1 thread and all cores, against the "
                                       "machine's read bandwidth over the same pages (black line)."
                                       + (" Hatched: runs that got under 90% of their threads' CPU time (the median of "
                                          "all runs, compare with care)." if starved else ""))
    return p


# ---------------------------------------------------------------- e2e.json

def _e2e_runs(data):
    runs = data.get("runs")
    return [r for r in runs if isinstance(r, dict) and r.get("mode") is not None] if isinstance(runs, list) else []


def _pins(rows):
    return sorted({r.get("pinned") for r in rows}, key=lambda v: (v is None, bool(v)))


def _keyspaces(rows):
    return sorted({r.get("keyspace") for r in rows if num(r.get("keyspace")) is not None})


def _per_request_by_channel(r):
    """{channel: bytes per request} of a replicated run, or None."""
    by = r.get("bytesByChannel")
    if not isinstance(by, dict) or not by:
        return None
    total = sum(num(v) or 0 for v in by.values())
    requests = num(r.get("requests"))
    if requests:
        return {ch: (num(v) or 0) / requests for ch, v in by.items()}
    bpr = num(r.get("bytesPerRequest"))
    if bpr is None or total <= 0:
        return None
    return {ch: bpr * (num(v) or 0) / total for ch, v in by.items()}


def plot_e2e(data, out_dir):
    p = Plots("e2e")
    runs = _e2e_runs(data)
    _e2e_rps(runs, out_dir, p)
    _e2e_bytes(runs, out_dir, p)
    _e2e_identical(runs, data, out_dir, p)
    _e2e_pause(runs, out_dir, p)
    _e2e_latency(data, out_dir, p)
    return p


def _e2e_rps(runs, out_dir, p):
    rows = [r for r in runs if num(r.get("rps")) is not None and num(r.get("keyspace")) is not None]
    if not rows:
        p.skip("rps", "no run with mode, keyspace and rps")
        return
    pins, keys, modes = _pins(rows), _keyspaces(rows), mode_sort({r["mode"] for r in rows})
    fig, axes = plt.subplots(1, len(pins), figsize=(6.5 * len(pins), 4.6), squeeze=False, sharey=True, layout="constrained")
    width = 0.8 / len(modes)
    for ax, pin in zip(axes[0], pins):
        for x, k in enumerate(keys):
            for j, m in enumerate(modes):
                s = spread(r["rps"] for r in rows if r.get("pinned") == pin and r["keyspace"] == k and r["mode"] == m)
                if not s:
                    continue
                xpos = x - 0.4 + width * (j + 0.5)
                ax.bar(xpos, s[0], width, color=MODE_COLORS.get(m, "#aaaaaa"), label=mode_label(m) if x == 0 else None,
                       yerr=[[s[0] - s[1]], [s[2] - s[0]]], capsize=3, error_kw=dict(linewidth=0.8))
                ax.text(xpos, s[2], f"{s[0]:,.0f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([keyspace_label(k) for k in keys])
        ax.set_title(pin_label(pin), fontsize=10)
        ax.set_ylabel("requests/s (median over rounds, min-max)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("redis-benchmark -t SET -P 16: requests/s by mode and key space R")
    p.save(fig, out_dir, "rps", "Client throughput of the same guest unreplicated, under Plover and under "
                                "checkpointing, per key space R (median over rounds; bars show min-max).")


def _e2e_bytes(runs, out_dir, p):
    rows = [r for r in runs if num(r.get("keyspace")) is not None and (num(r.get("bytesPerRequest")) is not None
                                                                       or _per_request_by_channel(r))]
    if not rows:
        p.skip("bytes", "no replicated run with bytesPerRequest or bytesByChannel")
        return
    pins, keys, modes = _pins(rows), _keyspaces(rows), mode_sort({r["mode"] for r in rows})
    channels = sorted({ch for r in rows for ch in (_per_request_by_channel(r) or {})},
                      key=lambda c: (["consensus", "synclink"].index(c) if c in ("consensus", "synclink") else 2, c))
    fig, axes = plt.subplots(len(pins), len(keys), figsize=(max(7.5, 3.6 * len(keys) + 1), 3.8 * len(pins)), squeeze=False, layout="constrained")
    for row_i, pin in enumerate(pins):
        for col, k in enumerate(keys):
            ax = axes[row_i][col]
            totals = {}
            for x, m in enumerate(modes):
                mine = [r for r in rows if r.get("pinned") == pin and r["keyspace"] == k and r["mode"] == m]
                if not mine:
                    continue
                by = [_per_request_by_channel(r) for r in mine]
                by = [b for b in by if b]
                bottom = 0.0
                if by and channels:
                    for ch in channels:
                        v = median(b.get(ch, 0) for b in by) or 0
                        labelled = ch in ax.get_legend_handles_labels()[1]
                        ax.bar(x, v, 0.6, bottom=bottom, color=CHANNEL_COLORS.get(ch, "#aaaaaa"), label=None if labelled else ch)
                        bottom += v
                else:
                    bottom = median(r.get("bytesPerRequest") for r in mine) or 0
                    ax.bar(x, bottom, 0.6, color=MODE_COLORS.get(m, "#aaaaaa"))
                totals[m] = bottom
                ax.text(x, bottom, f"{bottom:,.0f} B", ha="center", va="bottom", fontsize=8)
            if totals.get("plover") and totals.get("checkpoint"):
                ax.text(0.98, 0.98, f"checkpoint / Plover: x{totals['checkpoint'] / totals['plover']:.1f}",
                        transform=ax.transAxes, ha="right", va="top", fontsize=8)
            ax.set_xticks(range(len(modes)))
            ax.set_xticklabels([mode_label(m) for m in modes], fontsize=8)
            ax.set_title(f"{keyspace_label(k)}, {'pinned' if pin else 'unpinned' if pin is False else 'all'}", fontsize=9)
            if col == 0:
                ax.set_ylabel("bytes per request (median)")
            ax.grid(axis="y", alpha=0.3)
            ax.margins(y=0.2)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("bytes on the wire per client request, by mode and channel (every node, every frame)")
    p.save(fig, out_dir, "bytes", "Bytes per client request summed over the three nodes, stacked by channel "
                                  "(consensus: input entries, acks, heartbeats; synclink: pages, hashes, bitmaps, "
                                  "device state), per mode and key space (median over rounds).")


def _sync_records(r):
    syncs = r.get("syncs")
    return [s for s in syncs if isinstance(s, dict)] if isinstance(syncs, list) else []


def _paper_band(data):
    band = (data.get("setup") or {}).get("paperIdenticalPct") if isinstance(data.get("setup"), dict) else None
    try:
        lo, hi = (float(x) for x in str(band).rstrip("%").replace("%", "").split("-"))
        return lo, hi
    except (ValueError, TypeError):
        return None


def _e2e_identical(runs, data, out_dir, p):
    rows = [r for r in runs if r.get("mode") != "checkpoint" and num(r.get("keyspace")) is not None
            and any(num(s.get("union")) and num(s.get("identical")) is not None for s in _sync_records(r))]
    if not rows:
        p.skip("identical", "no Plover run with per-sync \"syncs\" records (union, identical)")
        return
    pins, keys = _pins(rows), _keyspaces(rows)
    fig, axes = plt.subplots(len(pins), len(keys), figsize=(max(8, 4.4 * len(keys) + 1), 3.6 * len(pins)), squeeze=False, sharey=True, layout="constrained")
    band = _paper_band(data)
    for row_i, pin in enumerate(pins):
        for col, k in enumerate(keys):
            ax = axes[row_i][col]
            mine = [r for r in rows if r.get("pinned") == pin and r["keyspace"] == k]
            for i, r in enumerate(sorted(mine, key=lambda r: (str(r.get("mode")), num(r.get("round")) or 0))):
                syncs = [s for s in _sync_records(r) if num(s.get("union"))]
                t0 = num(syncs[0].get("startedUs")) if syncs else None
                xs, ys = [], []
                for n, s in enumerate(syncs):
                    started = num(s.get("startedUs"))
                    xs.append((started - t0) / 1e6 if t0 is not None and started is not None else n)
                    ys.append(100 * (num(s.get("identical")) or 0) / num(s["union"]))
                ax.plot(xs, ys, marker=".", markersize=3, linewidth=0.8, label=f"round {r.get('round', i)}")
            if band:
                ax.axhspan(band[0], band[1], color="green", alpha=0.1, label=f"paper: {band[0]:g}-{band[1]:g}%")
            ax.set_ylim(-2, 102)
            timed = any(num(s.get("startedUs")) is not None for r in mine for s in _sync_records(r))
            ax.set_xlabel("seconds into the run" if timed else "sync number")
            if col == 0:
                ax.set_ylabel("identical pages (% of the union)")
            ax.set_title(f"{keyspace_label(k)}, {'pinned' if pin else 'unpinned' if pin is False else 'all'}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Plover: share of the dirty pages that were identical on both replicas (not sent), per sync")
    p.save(fig, out_dir, "identical", "Identical % per sync over each Plover run: the pages in the union of both "
                                      "dirty bitmaps whose hashes matched, so were not sent.")


def _e2e_pause(runs, out_dir, p):
    rows = [r for r in runs if num(r.get("keyspace")) is not None
            and any(isinstance(s.get("pauseUs"), dict) for s in _sync_records(r))]
    if not rows:
        p.skip("pause", "no replicated run with per-sync pauseUs")
        return
    for pin in _pins(rows):
        mine_pin = [r for r in rows if r.get("pinned") == pin]
        keys, modes = _keyspaces(mine_pin), mode_sort({r["mode"] for r in mine_pin})
        fig, axes = plt.subplots(len(modes), len(keys), figsize=(max(8, 4.6 * len(keys) + 1), 3.4 * len(modes)), squeeze=False, layout="constrained")
        used = []
        for row_i, m in enumerate(modes):
            for col, k in enumerate(keys):
                ax = axes[row_i][col]
                cands = sorted((r for r in mine_pin if r["mode"] == m and r["keyspace"] == k), key=lambda r: num(r.get("round")) or 0)
                if not cands:
                    ax.set_visible(False)
                    continue
                r = cands[0]   # the first round: every sync of one run
                syncs = [s for s in _sync_records(r) if isinstance(s.get("pauseUs"), dict)]
                bottom = [0.0] * len(syncs)
                parts = []
                for s in syncs:
                    parts += [k2 for k2, _ in pause_parts(s["pauseUs"]) if k2 not in parts]
                parts = [x for x in PAUSE_PARTS if x in parts] + [x for x in parts if x not in PAUSE_PARTS]
                xs = list(range(len(syncs)))
                for part in parts:
                    vals = [(num(s["pauseUs"].get(part)) or 0) / 1000 for s in syncs]
                    ax.bar(xs, vals, 1.0, bottom=bottom, color=PART_COLORS.get(part, "#aaaaaa"), linewidth=0)
                    bottom = [a + b for a, b in zip(bottom, vals)]
                    if part not in used:
                        used.append(part)
                other = [max(0.0, (num(s["pauseUs"].get("total")) or 0) / 1000 - b) for s, b in zip(syncs, bottom)]
                if any(o > 0.02 * max(b, 1e-9) for o, b in zip(other, bottom)):
                    ax.bar(xs, other, 1.0, bottom=bottom, color=PART_COLORS["other"], linewidth=0)
                    if "other" not in used:
                        used.append("other")
                ax.set_title(f"{mode_label(m)}, {keyspace_label(k)} (round {r.get('round', '?')}, {len(syncs)} syncs)", fontsize=9)
                ax.set_xlabel("sync number")
                if col == 0:
                    ax.set_ylabel("pause (ms)")
                ax.grid(axis="y", alpha=0.3)
        handles = [Patch(facecolor=PART_COLORS.get(u, "#aaaaaa"), label=part_label(u)) for u in used]
        visible = [a for a in axes[0] if a.get_visible()] or [a for a in axes.flat if a.get_visible()]
        visible[-1].legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
        tag = "pinned" if pin else "unpinned" if pin is False else "all"
        fig.suptitle(f"pause breakdown of every sync, {pin_label(pin)}")
        p.save(fig, out_dir, f"pause-{tag}", f"Where each sync's pause went ({tag} runs, the first round of each mode "
                                             f"and key space): stacked components per sync, in milliseconds.")


def _e2e_latency(data, out_dir, p):
    rows = data.get("latency")
    rows = [r for r in rows if isinstance(r, dict) and r.get("mode") is not None
            and (num(r.get("p50Ms")) is not None or num(r.get("p99Ms")) is not None)] if isinstance(rows, list) else []
    if not rows:
        p.skip("latency", "no \"latency\" rows with p50Ms/p99Ms")
        return
    pins, modes = _pins(rows), mode_sort({r["mode"] for r in rows})
    fig, axes = plt.subplots(1, len(pins), figsize=(6 * len(pins), 4.4), squeeze=False, sharey=True, layout="constrained")
    for ax, pin in zip(axes[0], pins):
        for x, m in enumerate(modes):
            mine = [r for r in rows if r.get("pinned") == pin and r["mode"] == m]
            for j, (key, alpha) in enumerate((("p50Ms", 1.0), ("p99Ms", 0.5))):
                s = spread(r.get(key) for r in mine)
                if not s:
                    continue
                xpos = x - 0.2 + 0.4 * j
                ax.bar(xpos, s[0], 0.38, color=MODE_COLORS.get(m, "#aaaaaa"), alpha=alpha,
                       yerr=[[s[0] - s[1]], [s[2] - s[0]]], capsize=3, error_kw=dict(linewidth=0.8))
                ax.text(xpos, s[2], f"{key[:3]}\n{s[0]:.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_yscale("log")
        ax.set_xticks(range(len(modes)))
        ax.set_xticklabels([mode_label(m) for m in modes])
        ax.set_title(pin_label(pin), fontsize=10)
        ax.set_ylabel("request latency (ms; p50 solid, p99 light)")
        ax.grid(axis="y", alpha=0.3, which="both")
        ax.margins(y=0.2)
    fig.suptitle("one client, one request at a time (redis-benchmark -c 1 -P 1): latency by mode")
    p.save(fig, out_dir, "latency", "What one closed-loop client feels: request latency p50 (solid) and p99 (light) "
                                    "per mode, median over rounds with min-max; replicated modes hold each reply "
                                    "until the sync that covers it.")


# ---------------------------------------------------------------- disk.json

DISK_COLORS = {"disk": "#1f77b4", "nodisk": "#7f7f7f"}


def plot_disk(data, out_dir):
    p = Plots("disk")
    runs = [r for r in data.get("runs", []) if isinstance(r, dict)] if isinstance(data.get("runs"), list) else []
    first = next((r for r in runs if r.get("variant") == "disk" and isinstance(r.get("syncs"), list)), None)
    syncs = [s for s in (first or {}).get("syncs", []) if isinstance(s, dict) and num(s.get("diskUnion"))]
    if syncs:
        fig, ax = plt.subplots(figsize=(11, 4.2), layout="constrained")
        xs = list(range(len(syncs)))
        divergent = [num(s.get("diskDivergent")) or 0 for s in syncs]
        identical = [(num(s.get("diskUnion")) or 0) - d for s, d in zip(syncs, divergent)]
        ax.bar(xs, divergent, 1.0, color="#d62728", linewidth=0, label="divergent (sent)")
        ax.bar(xs, identical, 1.0, bottom=divergent, color="#2ca02c", linewidth=0, label="identical (not sent)")
        ax.plot(xs, [num(s.get("diskDirty")) or 0 for s in syncs], ".", color="#000000", markersize=3,
                label="dirty on the primary (a checkpoint sends these)")
        ax.set_xlabel("sync with dirty disk blocks (round 0)")
        ax.set_ylabel("4 KiB blocks")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        p.save(fig, out_dir, "blocks", "Every sync with dirty disk blocks in the first disk run: the union of both "
                                       "replicas' dirty blocks, divergent (sent) and identical (not sent), and the "
                                       "blocks the primary's guest wrote.")
    else:
        p.skip("blocks", "no disk run with per-sync \"syncs\" carrying diskUnion")
    rounds = sorted({r.get("round") for r in runs if num(r.get("round")) is not None})
    if rounds and any(num(r.get("pauseP50Ms")) is not None for r in runs):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
        width = 0.38
        for j, variant in enumerate(("nodisk", "disk")):
            for k, key in enumerate(("pauseP50Ms", "pauseP99Ms")):
                vals = [num(next((r.get(key) for r in runs if r.get("variant") == variant and r.get("round") == rnd), None)) or 0
                        for rnd in rounds]
                axes[k].bar([x - width / 2 + j * width for x in range(len(rounds))], vals, width,
                            color=DISK_COLORS[variant], label="with the disk" if variant == "disk" else "without (RAM only)")
        steps = [num(next((r.get("diskStepsP50Ms") for r in runs if r.get("variant") == "disk" and r.get("round") == rnd), None))
                 for rnd in rounds]
        axes[0].plot(range(len(rounds)), [v or 0 for v in steps], "o", color="#d62728",
                     label="disk steps of a sync with dirty blocks (p50)")
        for k, what in enumerate(("p50", "p99")):
            axes[k].set_xticks(range(len(rounds)))
            axes[k].set_xticklabels([f"round {r}" for r in rounds])
            axes[k].set_ylabel(f"guest pause {what} (ms)")
            axes[k].grid(axis="y", alpha=0.3)
            axes[k].legend(fontsize=8)
        p.save(fig, out_dir, "pause", "The guest's pause per sync, p50 and p99, with the replicated disk and without it "
                                      "(same guest and load, booted in turn in each round), and the time the disk "
                                      "runs' syncs spent in their disk steps.")
    else:
        p.skip("pause", "no runs with pauseP50Ms")
    disk_runs = [r for r in runs if r.get("variant") == "disk" and num(r.get("diskWireBytesPerSync")) is not None]
    if disk_runs:
        fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
        labels = (("diskWireBytesPerSync", "Plover: disk frames", "#1f77b4"),
                  ("diskBlockBytesPerSync", "Plover: block data in them", "#aec7e8"),
                  ("checkpointDiskBytesPerSync", "every dirty block (checkpoint)", "#ff7f0e"))
        width = 0.8 / len(labels)
        for j, (key, label, color) in enumerate(labels):
            ax.bar([x - 0.4 + width / 2 + j * width for x in range(len(disk_runs))],
                   [(num(r.get(key)) or 0) / 1024 for r in disk_runs], width, color=color, label=label)
        ax.set_xticks(range(len(disk_runs)))
        ax.set_xticklabels([f"round {r.get('round', '?')}" for r in disk_runs])
        ax.set_ylabel("KiB per sync")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        p.save(fig, out_dir, "bytes", "Disk bytes per sync: Plover's disk frames (both replicas' dirty-block bitmaps, the "
                                      "backup's block hashes, the divergent blocks) and the block data among them, "
                                      "against the blocks the primary's guest wrote (what a checkpoint sends).")
    else:
        p.skip("bytes", "no disk runs with diskWireBytesPerSync")
    return p


PLOTTERS = {"sync": plot_sync, "consensus": plot_consensus, "hash": plot_hash, "e2e": plot_e2e, "disk": plot_disk}
