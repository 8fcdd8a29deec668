#!/usr/bin/env bash
# ./build.sh bench e2e: client throughput, replication bytes and one client's latency of the same guest
# unreplicated, under Plover and under checkpointing (sync.mode "checkpoint": the Remus baseline), in one run with
# the modes interleaved: every round boots each mode in turn, unpinned and pinned (--pin: each simulated host on
# its own core), and runs redis-benchmark -t SET -P 16 -r R for R = 100, 100000, 100000000, then -c 1 -P 1.
# Ratios are taken within a round; medians with min-max over rounds. Writes $PLOVER_ARTIFACTS/bench/e2e.json.
# Env: what ./build.sh env prints (build.sh exports it); PLOVER_BENCH_REQUESTS (40000 per run), PLOVER_BENCH_ROUNDS
#      (3), PLOVER_BENCH_PIN (both | on | off), PLOVER_BENCH_KEYSPACES (e.g. 100000), PLOVER_BENCH_MODES
#      (e.g. plover,checkpoint), PLOVER_BENCH_LATENCY_REQUESTS (1000), PLOVER_BENCH_WARMUP (5000); guest settings
#      PLOVER_BENCH_SMP (2), PLOVER_BENCH_TCG (multi | single), PLOVER_BENCH_ICOUNT (e.g. shift=auto,sleep=on; needs
#      single); PLOVER_BENCH_EARLY_RESUME (on | off: sync.earlyResume); PLOVER_BENCH_DEVICE_DELTA (on | off:
#      sync.deviceStateDelta); PLOVER_BENCH_RESUME_POINT (compare | bitmaps: sync.resumePoint); PLOVER_BENCH_SUB_BLOCK and
#      PLOVER_BENCH_SUB_BLOCK_HASH (sync.subBlockBytes, sync.subBlockHashBytes); PLOVER_BENCH_OUT (file name, default e2e.json).
set -euo pipefail
exec python3 "$(dirname "${BASH_SOURCE[0]}")/e2e.py" "$@"
