#!/usr/bin/env bash
# Coverage-guided fuzzing of one target with AFL++ and SharpFuzz (fuzz/README.md). Called by ./build.sh fuzz.
#
#   fuzz/fuzz.sh                    list the targets
#   fuzz/fuzz.sh TARGET [SECONDS]   fuzz TARGET for SECONDS (default 60), resuming its previous run if there is one
#
# Builds fuzz/Plover.Fuzz into $OUT/fuzz/bin, instruments Plover.Core.dll, Google.Protobuf.dll and
# Plover.Fuzz.Admin.dll (Plover.Native's Host) there (the copies the tests use are never touched), starts from fuzz/corpus/TARGET and keeps the queue and the crashes in
# $PLOVER_FUZZ_FINDINGS/TARGET (default /var/tmp/plover-fuzz), outside the repository.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${PLOVER_OUT:-$ROOT/out}
FINDINGS=${PLOVER_FUZZ_FINDINGS:-/var/tmp/plover-fuzz}
BIN="$OUT/fuzz/bin"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

die() { printf 'fuzz: %s\n' "$*" >&2; exit 1; }
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Build and instrument once per change of the sources (the key is over the fuzz projects and what they compile).
build() {
  local key
  key=$( { dotnet --version; cd "$ROOT" && find fuzz/Plover.Fuzz fuzz/Plover.Fuzz.Admin plugin/Plover.Core plugin/Plover.Native/Host interop proto -type f -not -path '*/bin/*' -not -path '*/obj/*' \
           \( -name '*.cs' -o -name '*.csproj' -o -name '*.proto' \) | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16)
  [ -f "$BIN/.key" ] && [ "$(cat "$BIN/.key")" = "$key" ] && return 0
  log "building and instrumenting the fuzz targets ($BIN)"
  rm -rf "$BIN"
  dotnet build "$ROOT/fuzz/Plover.Fuzz/Plover.Fuzz.csproj" -c Release -nologo -v:q -o "$BIN" \
    -p:IntermediateOutputPath="$OUT/fuzz/obj/" > "$OUT/fuzz/build.log" 2>&1 || { tail -30 "$OUT/fuzz/build.log"; die "build failed"; }
  (cd "$ROOT" && dotnet tool restore > /dev/null) || die "dotnet tool restore (SharpFuzz.CommandLine) failed"
  local dll
  for dll in Plover.Core.dll Google.Protobuf.dll Plover.Fuzz.Admin.dll; do
    (cd "$ROOT" && dotnet tool run sharpfuzz "$BIN/$dll") > "$OUT/fuzz/instrument.log" 2>&1 ||
      { cat "$OUT/fuzz/instrument.log"; die "sharpfuzz could not instrument $dll"; }
  done
  echo "$key" > "$BIN/.key"
}

stat_of() { sed -n "s/^$1 *: *//p" "$2" 2>/dev/null | head -1; }

# The whole run is one function, read before it starts: editing this file under a running fuzzer is harmless.
main() {
  target=${1:-}
  seconds=${2:-60}
  mkdir -p "$OUT/fuzz"
  if [ -z "$target" ]; then
    build
    echo "usage: ./build.sh fuzz TARGET [SECONDS]; targets:"
    dotnet "$BIN/Plover.Fuzz.dll" list
    exit 2
  fi
  [ -d "$ROOT/fuzz/corpus/$target" ] || die "no target '$target' (no fuzz/corpus/$target); run ./build.sh fuzz for the list"
  [[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || die "SECONDS must be a positive integer, not '$seconds'"
  command -v afl-fuzz > /dev/null || die "afl-fuzz not found: apt-get install afl++ (./build.sh setup does not install it; only fuzzing needs it)"
  build

  dir="$FINDINGS/$target"
  mkdir -p "$FINDINGS"
  input="$ROOT/fuzz/corpus/$target"
  if [ -f "$dir/default/fuzzer_stats" ]; then input=-; log "resuming $dir"; fi
  queue_size() { { ls "$dir/default/queue" 2>/dev/null || true; } | wc -l; }
  before=$(queue_size)

  log "fuzzing $target for $seconds s (AFL++ at nice 19; findings in $dir)"
  export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
  # -t: a sync runs a real engine thread and socket; a hang is anything over 5 s. -m none: the CLR maps lots of memory.
  # PLOVER_AFL_FLAGS: more afl-fuzz options, e.g. "-F DIR" to take in new seeds while resuming a run.
  # shellcheck disable=SC2086
  nice -n 19 afl-fuzz -i "$input" -o "$dir" -t 5000 -m none -V "$seconds" ${PLOVER_AFL_FLAGS:-} -- dotnet "$BIN/Plover.Fuzz.dll" "$target" \
    > "$dir.log" 2>&1 || { tail -40 "$dir.log"; die "afl-fuzz failed (log: $dir.log)"; }

  stats="$dir/default/fuzzer_stats"
  execs=$(stat_of execs_done "$stats"); rate=$(stat_of execs_per_sec "$stats")
  crashes=$(stat_of saved_crashes "$stats"); hangs=$(stat_of saved_hangs "$stats")
  after=$(queue_size)
  echo "$(date -u +%FT%TZ) $target ${seconds}s execs_done=$execs" >> "$FINDINGS/runs.log"
  echo "target:       $target"
  echo "executions:   $execs (this run and the runs it resumed; every run is in $FINDINGS/runs.log)"
  echo "execs/s:      $rate"
  echo "crashes:      ${crashes:-0} (in $dir/default/crashes)"
  echo "hangs:        ${hangs:-0} (in $dir/default/hangs)"
  echo "new corpus:   $((after - before)) entries this run, $after in the queue ($dir/default/queue)"
  cat <<EOT

Replay a crash (uninstrumented build):
  dotnet run --project fuzz/Plover.Fuzz -c Release -- replay $target $dir/default/crashes/id:*
Keep inputs in the repository corpus (replayed by the tests, Plover.Tests.Fuzz):
  minimised:  (afl-cmin refuses /tmp and /var/tmp, and wants dotnet's full path)
              cp -r $dir/default/queue $OUT/fuzz/q-$target
              AFL_SKIP_BIN_CHECK=1 afl-cmin -i $OUT/fuzz/q-$target -o $OUT/fuzz/cmin-$target -t 5000 -m none -- \$(command -v dotnet) $BIN/Plover.Fuzz.dll $target
              then copy the new files from $OUT/fuzz/cmin-$target into fuzz/corpus/$target/found-ID
  one input:  cp $dir/default/crashes/id:... fuzz/corpus/$target/regression-NAME   (after the fix)
EOT
}

main "$@"
