#!/usr/bin/env bash
# ./build.sh bench disk: a disk-heavy workload measured like the RAM one (issue 15 item 6). Every round boots two
# Plover clusters in turn with the same guest and the same client load: "disk", each replica with a replicated ext4
# disk (drives=data0) that the guest appends a line to with a sync after each (plover.work=append: redis'
# appendfsync always), and "nodisk", the same guest command line without the drive (the mount fails, the same
# append loop writes the initramfs, RAM only). Per sync (the primary's sync log): the disk blocks its guest wrote,
# the union, identical %, divergent blocks, the disk frames' bytes against the bytes of every dirty block (what a
# checkpoint sends) and the time in disk steps; per round the guest pause with and without the disk. Medians with
# min-max over rounds. Writes $PLOVER_ARTIFACTS/bench/disk.json. Not part of ./build.sh test.
# Env: what ./build.sh env prints (build.sh exports it); PLOVER_BENCH_ROUNDS (3), PLOVER_BENCH_SECONDS (15: the
#      measured window per cluster), PLOVER_BENCH_LOAD (on | off: redis-benchmark -t SET -P 16 -r 100000 from the
#      client during the window; off: the append loop alone, syncs at sync.maxEpochMs), PLOVER_BENCH_PIN (off | on),
#      PLOVER_BENCH_OUT (file name, default disk.json).
set -euo pipefail
exec python3 "$(dirname "${BASH_SOURCE[0]}")/disk.py" "$@"
