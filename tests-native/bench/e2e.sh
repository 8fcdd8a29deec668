#!/usr/bin/env bash
# ./build.sh bench e2e: client throughput of the same guest unreplicated, under Plover and under Remus mode (Plover's
# engine sending every dirty page at every sync), side by side in one run, with redis-benchmark -t SET -P 16 -r R
# for R = 100, 100000, 100000000; replication bytes per request. Writes $PLOVER_ARTIFACTS/bench/e2e.json.
# Env: what ./build.sh env prints (build.sh exports it); PLOVER_BENCH_REQUESTS (default 40000 per run),
#      PLOVER_BENCH_REPS (default 3; the median is reported).
set -euo pipefail
exec python3 "$(dirname "${BASH_SOURCE[0]}")/e2e.py" "$@"
