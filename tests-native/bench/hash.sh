#!/usr/bin/env bash
# ./build.sh bench hash: page hashing throughput of every kernel against the machine's read bandwidth.
# Env: PLOVER_LIB = path of libplover.so (its siblings libplover.x86-64-v3.so / -v4.so are the ISA variants);
#      PLOVER_ARTIFACTS = output directory (writes $PLOVER_ARTIFACTS/bench/hash.json).
# Without PLOVER_LIB the three variants are published into a temporary directory first (1.5-2.5 minutes).
# Extra arguments go to hash_bench (e.g. --quick).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
artifacts="${PLOVER_ARTIFACTS:-$root/artifacts}"
work="$(mktemp -d /tmp/plover-hash-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT

lib="${PLOVER_LIB:-}"
if [ -z "$lib" ]; then
    echo "PLOVER_LIB not set: publishing libplover.so (x86-64-v2, -v3, -v4) into $work" >&2
    for isa in v2 v3 v4; do
        args=()
        [ "$isa" != v2 ] && args=(-p:IlcInstructionSet=x86-64-$isa)
        # own artifacts path: never races with builds of the shared tree's obj/ and bin/
        dotnet publish "$root/plugin/Plover.Native" -c Release --artifacts-path "$work/build-$isa" -o "$work/$isa" "${args[@]}" \
            > "$work/publish-$isa.log" 2>&1 \
            || { cat "$work/publish-$isa.log" >&2; exit 1; }
    done
    mkdir -p "$work/lib"
    cp "$work/v2/libplover.so" "$work/lib/libplover.so"
    cp "$work/v3/libplover.so" "$work/lib/libplover.x86-64-v3.so"
    cp "$work/v4/libplover.so" "$work/lib/libplover.x86-64-v4.so"
    lib="$work/lib/libplover.so"
fi
[ -f "$lib" ] || { echo "hash.sh: $lib does not exist" >&2; exit 1; }

g++ -O2 -std=c++17 -I"$root/interop" "$root/tests-native/bench/hash_bench.cpp" -o "$work/hash_bench" -ldl -lpthread
mkdir -p "$artifacts/bench"
"$work/hash_bench" --lib "$lib" --json "$artifacts/bench/hash.json" "$@"
