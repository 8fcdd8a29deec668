#!/usr/bin/env bash
# ./build.sh bench sync: syncvm pause time and bytes on the wire, Plover (hash, send divergent pages) vs Remus mode
# (the same engine sending every dirty page), two replicas over authenticated loopback TCP with synthetic memory.
# Env: PLOVER_ARTIFACTS = output directory (writes $PLOVER_ARTIFACTS/bench/sync.json; default /work/main/artifacts).
# Extra arguments go to the bench (tests-native/bench/sync/Program.cs): --sizes 1,4 --dirty 1,5,20 --divergent 0,25,50
# --reps 3 --target-reps 15 --device-state BYTES --quick. Default grid: 1 and 4 GiB x 1/5/20% dirty x 0/25/50% divergent,
# 3 reps each (median), plus the target point (10,000 dirty pages, 25% divergent, 15 reps) on 1 GiB.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
artifacts="${PLOVER_ARTIFACTS:-/work/main/artifacts}"
work="$(mktemp -d /tmp/plover-sync-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# own artifacts path: never races with builds of the shared tree's obj/ and bin/
dotnet build "$root/tests-native/bench/sync/SyncBench.csproj" -c Release --artifacts-path "$work/build" -o "$work/out" \
    > "$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
mkdir -p "$artifacts/bench"
dotnet "$work/out/SyncBench.dll" --json "$artifacts/bench/sync.json" "$@"
