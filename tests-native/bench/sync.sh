#!/usr/bin/env bash
# ./build.sh bench sync: syncvm pause time and bytes on the wire, Plover (replicate mode: hash, send what differs)
# vs checkpointing (the same engine sending every page the primary dirtied), two replicas over authenticated loopback
# TCP with synthetic memory. Writes $PLOVER_ARTIFACTS/bench/sync.json (default /work/main/artifacts); its fields are
# documented at the top of tests-native/bench/sync/Program.cs.
# Default: the grid (1 and 4 GiB x 1/5/20% dirty x 0/25/50% divergent, 3 reps), the target point (10,000 dirty pages,
# 25% divergent, 15 reps) at every sub-block size 0 (whole pages), 64, 128, 256, 512, and the scale curves (1, 2, 4,
# 8 GiB x 1k/10k/100k dirty pages x hashing threads 1 and all, 3 reps; 8 GiB needs 16 GiB of RAM for the two
# replicas). Divergent pages differ like those measured under Redis (--workload realistic) or in one word (word).
# Extra arguments go to the bench: --sizes 1,4 --dirty 1,5,20 --divergent 0,25,50 --reps 3 --target-reps 15
# --sub-blocks 0,64,128 --sub-block 64 (the engine's) --sub-block-hash 2 (its hash bytes) --scale-sizes 1,2,4,8 --scale-dirty 1000,10000,100000
# --scale-reps 3 --no-scale --workload realistic|word --device-state BYTES --pages-per-frame N --quick (a short run
# for development: 1 GiB grid, target at 0/64/128, scale 1-2 GiB x 1k/10k).
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
