"""The three promises of Plover, checked on a running cluster (tests, demo and benchmark use these).

1. Same inputs in the same order: at every sync both replicas stopped at the same log index with the same digest of
   every INPUT entry they injected before it (the replica's running input digest).
2. Identical memory: at a sync point both replicas hash every page of every RAM block; the digests must match, and
   when they do not, the differing pages are named.
3. No output before the backup can reproduce it: every frame the client saw from the guest was released by the
   primary after the backup acknowledged the sync covering it: the primary's release of epoch e comes after the
   backup's apply of e, and at any instant the client has seen at most as many frames as the primary had
   released by then.
"""
import time

from pcap import packet_times_us


def sync_log(node, completed_only=True):
    """Every sync the node's replica kept (its engine keeps the last 4096), oldest first."""
    syncs, since = [], 0
    while True:
        r = node.admin(f"syncs {since}")
        batch = r["syncs"]
        syncs += batch
        if not r.get("truncated") or not batch:
            break
        since = batch[-1]["epoch"]
    return [s for s in syncs if s["outcome"] == "completed"] if completed_only else syncs


def compare_input_order(primary, backup):
    """(epochs compared, mismatches): for every epoch both completed, the log index and input digest must match."""
    p = {s["epoch"]: s for s in sync_log(primary)}
    b = {s["epoch"]: s for s in sync_log(backup)}
    common = sorted(set(p) & set(b))
    bad = [f"e{e}: primary at log index {p[e]['logIndex']} digest {p[e]['inputDigest']}, "
           f"backup at {b[e]['logIndex']} digest {b[e]['inputDigest']}"
           for e in common if (p[e]["logIndex"], p[e]["inputDigest"]) != (b[e]["logIndex"], b[e]["inputDigest"])]
    return len(common), bad


def compare_memory(cluster, timeout=120, rtc_clock_differs=None):
    """Hashes all RAM of both replicas at the same sync point. Returns (epoch, differences); differences name
    the blocks and pages that differ (empty: identical). rtc_clock_differs: called with a description instead of
    reporting an RTC section that differs only in its clock (rtc_clock_only)."""
    primary, backup = cluster.nodes[1], cluster.nodes[2]
    deadline = time.time() + timeout
    while time.time() < deadline:
        before = {n.id: (n.admin("verify-result")["result"] or {}).get("epoch", 0) for n in (primary, backup)}
        for n in (backup, primary):
            n.admin("verify-at-sync")
        try:
            primary.admin("sync-now")
        except RuntimeError:
            pass   # the guest may be about to sync anyway; the armed check runs at whichever sync is next
        results = {}
        while time.time() < deadline and len(results) < 2:
            for n in (primary, backup):
                r = n.admin("verify-result")
                if r["result"] and r["result"]["epoch"] > before[n.id] and not r["armed"]:
                    results[n.id] = r["result"]
            time.sleep(0.05)
        if len(results) < 2:
            break
        p, b = results[1], results[2]
        if p["epoch"] != b["epoch"]:
            continue   # a sync slipped in between the two arms: try again
        diffs = []
        names_p, names_b = [x["name"] for x in p["blocks"]], [x["name"] for x in b["blocks"]]
        if names_p != names_b:   # zip below would compare only the common part
            diffs.append(f"the RAM blocks differ: primary {names_p}, backup {names_b}")
        elif p["digest"] != b["digest"]:
            for bp, bb in zip(p["blocks"], b["blocks"]):
                if bp["digest"] == bb["digest"]:
                    continue
                hp = primary.admin(f"verify-pages {bp['id']}")["hashes"]
                hb = backup.admin(f"verify-pages {bb['id']}")["hashes"]
                pages = [i for i, (x, y) in enumerate(zip(hp, hb)) if x != y]
                if len(hp) != len(hb):
                    diffs.append(f"block '{bp['name']}': {len(hp)} pages on the primary, {len(hb)} on the backup")
                diffs.append(f"block '{bp['name']}': {len(pages)} page(s) differ, first: {pages[:20]}")
            if not diffs:
                diffs.append(f"the RAM digests differ ({p['digest']} vs {b['digest']}) but no block does")
        devices = compare_devices(p.get("devices", []), b.get("devices", []))
        if rtc_clock_differs and devices and devices[0].endswith("differ: ['mc146818rtc']"):
            why = rtc_clock_only(primary, backup)
            if why:
                rtc_clock_differs(f"e{p['epoch']}: {why}")
                devices = []
        return p["epoch"], diffs + devices
    raise TimeoutError("no sync point hashed on both replicas in time")


def compare_devices(primary, backup):
    """Differences between two replicas' device state sections at one sync point ({name, hash} each, in save
    order): after the backup applied the sync, every device's state must be byte-equal to the primary's."""
    if [d["name"] for d in primary] != [d["name"] for d in backup]:
        return [f"the device state sections differ: primary {[d['name'] for d in primary]}, "
                f"backup {[d['name'] for d in backup]}"]
    differ = [p["name"] for p, b in zip(primary, backup) if p["hash"] != b["hash"]]
    return [f"{len(differ)} of {len(primary)} device state section(s) differ: {differ}"] if differ else []


# QEMU's mc146818rtc section (vmstate version 3) after its header: every field, with the ones that follow the host
# clock: the RTC runs on QEMU_CLOCK_HOST (the default), its pre_save writes the time of the save into the CMOS
# clock registers, and its update timer keeps firing (flags in register C) while the VM is stopped.
RTC_FIELDS = [("cmos", 128), ("cmosIndex", 1), ("unused1", 28), ("periodicTimer", 8), ("nextPeriodicTime", 8),
              ("unused2", 24), ("irqCoalesced", 4), ("period", 4), ("baseRtc", 8), ("lastUpdate", 8), ("offset", 8),
              ("updateTimer", 8), ("nextAlarmTime", 8)]
RTC_HOST_CLOCK_FIELDS = {"periodicTimer", "nextPeriodicTime", "updateTimer", "nextAlarmTime"}
RTC_CLOCK_REGISTERS = {0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0c, 0x32}   # time, date, UIP, flags, century


def rtc_fields(data):
    """The mc146818rtc section's fields by name (bytes), after its header (type, id, name, instance, version)."""
    at = 6 + data[5] + 8
    fields = {}
    for name, size in RTC_FIELDS:
        fields[name] = data[at:at + size]
        at += size
    fields["rest"] = data[at:]   # subsections and footer
    return fields


def rtc_seconds_of_day(cmos):
    value = (lambda b: b) if cmos[0x0b] & 0x04 else (lambda b: (b >> 4) * 10 + (b & 0x0f))   # binary or BCD
    return value(cmos[0x04] & 0x7f) * 3600 + value(cmos[0x02]) * 60 + value(cmos[0x00])


def rtc_clock_only(primary, backup, most_seconds=5):
    """A description when the two replicas' RTC sections of the last check differ only where QEMU's RTC follows the
    host clock (the CMOS clock registers a save refreshes, their flags, the host-clock timers) and their clocks read
    at most most_seconds apart; None when any other field differs (the clock's base, its offset, the other CMOS
    bytes: a real difference)."""
    p = rtc_fields(bytes.fromhex(primary.admin("verify-device mc146818rtc")["hex"]))
    b = rtc_fields(bytes.fromhex(backup.admin("verify-device mc146818rtc")["hex"]))
    differ = [k for k in p if p[k] != b[k] and k not in RTC_HOST_CLOCK_FIELDS and k != "cmos"]
    registers = [i for i in range(128) if p["cmos"][i] != b["cmos"][i]]
    if differ or any(i not in RTC_CLOCK_REGISTERS for i in registers):
        return None
    apart = abs(rtc_seconds_of_day(p["cmos"]) - rtc_seconds_of_day(b["cmos"]))
    apart = min(apart, 86400 - apart)
    if apart > most_seconds:
        return None
    timers = [k for k in RTC_HOST_CLOCK_FIELDS if p[k] != b[k]]
    return (f"mc146818rtc: CMOS registers {[hex(i) for i in registers]} and timers {sorted(timers)} differ, the clocks "
            f"read {apart} s apart; its clock base (base_rtc, last_update, offset) and every other field are equal")


def check_output_guard(primary, backup, capture_path, stopped_us=None, in_flight_us=200_000):
    """Returns (frames captured, frames released, problems). The capture must have run from before the guest
    could send anything until stopped_us, in the client's namespace, filtered on the guest's MAC. Every frame
    released more than in_flight_us before the capture stopped must have been captured, and no frame more than
    was released."""
    captured = [t for t in packet_times_us(capture_path) if stopped_us is None or t <= stopped_us]
    p = [s for s in sync_log(primary) if stopped_us is None or s["outputUs"] <= stopped_us]
    b = {s["epoch"]: s for s in sync_log(backup)}
    problems = []
    for s in p:
        if s["outputFrames"] and s["epoch"] in b and s["outputUs"] < b[s["epoch"]]["outputUs"]:
            problems.append(f"e{s['epoch']}: the primary released {s['outputFrames']} frame(s) at {s['outputUs']}, "
                            f"before the backup applied the sync at {b[s['epoch']]['outputUs']}")
    releases = sorted((s["outputUs"], s["outputFrames"]) for s in p if s["outputFrames"])
    released_total = sum(n for _, n in releases)
    i, released = 0, 0
    for k, t in enumerate(captured):
        while i < len(releases) and releases[i][0] <= t:
            released += releases[i][1]
            i += 1
        if k + 1 > released:
            problems.append(f"frame {k + 1} reached the client at {t} us, when only {released} frame(s) had been "
                            f"released")
            break
    if stopped_us is not None:
        settled = sum(n for t, n in releases if t <= stopped_us - in_flight_us)
        if len(captured) < settled:
            problems.append(f"{settled - len(captured)} released frame(s) never reached the client")
    return len(captured), released_total, problems


def split_brain(windows_by_node):
    """Problems found in the nodes' release windows: {node id: [{term, frames, firstUs, lastUs}, ...]} (a killed
    node's last sample stands for it). Two nodes must never release in the same term, and a node that released in
    term t must have stopped before another node started releasing in a later term (a deposed primary still
    releasing while the new one does). Times are Unix microseconds from one clock (the nodes share a machine)."""
    problems = []
    spans = [(node, w) for node, windows in windows_by_node.items() for w in windows if w["frames"] > 0]
    for i, (a, wa) in enumerate(spans):
        for b, wb in spans[i + 1:]:
            if a == b:
                continue
            if wa["term"] == wb["term"]:
                problems.append(f"term {wa['term']}: nodes {a} and {b} both released output")
                continue
            (early_node, early), (late_node, late) = sorted(((a, wa), (b, wb)), key=lambda x: x[1]["term"])
            if early["lastUs"] >= late["firstUs"]:
                problems.append(f"node {early_node} released in term {early['term']} until {early['lastUs']}, after "
                                f"node {late_node} began releasing in term {late['term']} at {late['firstUs']} "
                                f"({(early['lastUs'] - late['firstUs']) / 1000:.1f} ms of overlap)")
    return problems
