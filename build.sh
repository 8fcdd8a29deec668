#!/usr/bin/env bash
# Plover: set up, build, test, demo and benchmark.
#
#   ./build.sh setup        install packages; build the patched QEMU (cached), libplover.so, the CLI, the guest
#   ./build.sh test         setup, then every test suite (managed, native, end to end)
#   ./build.sh demo         setup, then boot a guest with the library attached and show what it sees
#   ./build.sh bench NAME   setup, then tests-native/bench/NAME.sh (hash, consensus, sync, e2e), then its plots
#   ./build.sh bench report plots of every benchmark JSON present and one HTML page (artifacts/bench/report.html)
#   ./build.sh env          print the built artifacts as KEY=VALUE lines
#   ./build.sh fuzz [TARGET [SECONDS]]  coverage-guided fuzzing of TARGET with AFL++ (fuzz/README.md); no TARGET: the list
#
# Expensive results are cached outside the repository, keyed by what produced them:
#   $PLOVER_CACHE (default /var/cache/plover)/qemu-<key>/  the QEMU binary (key: source version, patches, ABI header)
#   $PLOVER_CACHE/guest-<key>/                            kernel + initramfs (key: kernel, init script)
# Repository-local outputs go to out/ (libraries, CLI, native test build) and artifacts/ (benchmark JSON); the
# library and CLI are published again only when their inputs changed (out/lib/.key).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${PLOVER_CACHE:-/var/cache/plover}
OUT=${PLOVER_OUT:-$ROOT/out}
ARTIFACTS=${PLOVER_ARTIFACTS:-$ROOT/artifacts}
JOBS=$(nproc)

# The QEMU source: Debian trixie's package, pinned; if the mirror no longer has this exact version the newest
# 10.0.x in trixie is used and the patches must still apply (the cache key carries the version actually used).
QEMU_DEB_VERSION=1:10.0.13+ds-0+deb13u1
QEMU_CONFIGURE=(--target-list=x86_64-softmmu --disable-docs --disable-werror --enable-slirp --disable-gtk
  --disable-sdl --disable-vnc --disable-opengl --disable-spice --disable-xen --disable-download
  --disable-install-blobs --python=/usr/bin/python3 --enable-plover)

APT_PACKAGES=(dpkg-dev ninja-build libglib2.0-dev libpixman-1-dev flex bison pkg-config libslirp-dev libfdt-dev
  python3-venv seabios ipxe-qemu qemu-system-data busybox-static linux-image-amd64 cpio iproute2 redis-server redis-tools tcpdump
  libibverbs-dev librdmacm-dev libucx0 cmake g++ libgtest-dev libgmock-dev nlohmann-json3-dev)
APT_BACKPORTS=(meson python3-pycotap)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- packages
apt_sources() {
  local f=/etc/apt/sources.list.d/plover.sources
  [ -f "$f" ] && return 0
  log "adding Debian trixie sources (QEMU 10.0 source) and bookworm-backports (meson >= 1.5)"
  cat > "$f" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt-get update -q >/dev/null
}

missing_packages() {
  local p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done
}

setup_packages() {
  local missing missing_bp
  missing=$(missing_packages "${APT_PACKAGES[@]}")
  missing_bp=$(missing_packages "${APT_BACKPORTS[@]}")
  # meson from bookworm is 1.0; QEMU 10 needs >= 1.5
  if ! dpkg --compare-versions "$(dpkg-query -W -f='${Version}' meson 2>/dev/null || echo 0)" ge 1.5; then
    missing_bp="$missing_bp meson"
  fi
  [ -z "$missing$missing_bp" ] && [ -f /etc/apt/sources.list.d/plover.sources ] && return 0
  [ "$(id -u)" = 0 ] || die "packages missing ($missing $missing_bp) and not root: run as root or install them"
  apt_sources
  log "installing packages:$(echo $missing $missing_bp | tr '\n' ' ')"
  apt-get update -q >/dev/null
  # shellcheck disable=SC2086
  [ -z "$missing" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
  # shellcheck disable=SC2086
  [ -z "$missing_bp" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports $missing_bp >/dev/null
}

# ---------------------------------------------------------------- QEMU
qemu_source() {  # prints the path of the .dsc to build from
  local src="$CACHE/src" v
  mkdir -p "$src"
  v=${QEMU_DEB_VERSION#*:}
  if [ ! -f "$src/qemu_$v.dsc" ]; then
    (cd "$src" && apt-get source -q --download-only "qemu=$QEMU_DEB_VERSION" >/dev/null 2>&1) ||
      (cd "$src" && apt-get source -q --download-only qemu/trixie >/dev/null 2>&1) ||
      die "cannot download the QEMU source from Debian trixie (is deb-src for trixie configured?)"
  fi
  if [ -f "$src/qemu_$v.dsc" ]; then echo "$src/qemu_$v.dsc"; else ls -1 "$src"/qemu_10.0.*.dsc | sort -V | tail -1; fi
}

qemu_key() {
  { basename "$1"; cat "$ROOT"/qemu-patches/*.patch "$ROOT/interop/plover_abi.h"; echo "${QEMU_CONFIGURE[*]}"; } |
    sha256sum | cut -c1-16
}

setup_qemu() {
  local dsc key dir work
  dsc=$(qemu_source)
  key=$(qemu_key "$dsc")
  dir="$CACHE/qemu-$key"
  QEMU="$dir/bin/qemu-system-x86_64"
  if [ -x "$QEMU" ]; then return 0; fi
  log "building patched QEMU from $(basename "$dsc") (cache key $key; about 4 minutes on 2 cores)"
  work=$(mktemp -d "$CACHE/qemu-build.XXXXXX")
  dpkg-source -x "$dsc" "$work/src" > "$work/dpkg-source.log" 2>&1 || { cat "$work/dpkg-source.log"; die "dpkg-source failed"; }
  for p in "$ROOT"/qemu-patches/*.patch; do
    patch -d "$work/src" -p1 -s --no-backup-if-mismatch < "$p" || die "patch $(basename "$p") does not apply to $(basename "$dsc")"
  done
  cp "$ROOT/interop/plover_abi.h" "$work/src/include/system/plover-abi.h"
  mkdir -p "$work/src/build"
  (cd "$work/src/build" && ../configure "${QEMU_CONFIGURE[@]}" > "$work/configure.log" 2>&1) ||
    { tail -30 "$work/configure.log"; die "QEMU configure failed (log: $work/configure.log)"; }
  local t0=$SECONDS
  (cd "$work/src/build" && ninja -j"$JOBS" qemu-system-x86_64 > "$work/ninja.log" 2>&1) ||
    { grep -m20 -A5 'error' "$work/ninja.log"; die "QEMU build failed (log: $work/ninja.log)"; }
  mkdir -p "$dir.tmp/bin"
  cp "$work/src/build/qemu-system-x86_64" "$dir.tmp/bin/"
  echo "$(basename "$dsc") built in $((SECONDS - t0)) s" > "$dir.tmp/BUILD-INFO"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  rm -rf "$work"
  log "QEMU ready: $QEMU ($(cat "$dir/BUILD-INFO"))"
}

# ---------------------------------------------------------------- library and CLI
dotnet_env() {
  export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
}

# Everything the library and the CLI are built from (sources, projects, proto, ABI header, SDK version).
library_key() {
  { dotnet --version
    cd "$ROOT" && find plugin proto interop Directory.Build.props -type f -not -path '*/bin/*' -not -path '*/obj/*' \
      \( -name '*.cs' -o -name '*.csproj' -o -name '*.proto' -o -name '*.h' -o -name '*.props' -o -name '*.json' \) |
      LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16
}

setup_library() {
  dotnet_env
  mkdir -p "$OUT/lib" "$OUT/bin"
  local key
  key=$(library_key)
  if [ -f "$OUT/lib/.key" ] && [ "$(cat "$OUT/lib/.key")" = "$key" ] && [ -x "$OUT/bin/plover" ] &&
     [ -f "$OUT/lib/libplover.so" ] && [ -f "$OUT/lib/libplover.x86-64-v3.so" ] && [ -f "$OUT/lib/libplover.x86-64-v4.so" ]; then
    return 0   # published from these very inputs already
  fi
  rm -f "$OUT/lib/.key"
  log "publishing libplover.so (NativeAOT: x86-64-v2, v3 and v4 variants) and the plover CLI"
  # One intermediate directory per instruction-set variant so that each really gets its own native compile.
  local variant ilc
  for variant in v2 v3 v4; do
    case $variant in v2) ilc="" ;; v3) ilc="-p:IlcInstructionSet=x86-64-v3" ;; v4) ilc="-p:IlcInstructionSet=x86-64-v4" ;; esac
    dotnet publish "$ROOT/plugin/Plover.Native/Plover.Native.csproj" -c Release -nologo -v:q \
      -p:IntermediateOutputPath="obj/Release/$variant/" -p:OutputPath="bin/Release/$variant/" $ilc \
      -o "$OUT/publish-$variant" > "$OUT/publish-$variant.log" 2>&1 ||
      { tail -30 "$OUT/publish-$variant.log"; die "dotnet publish of libplover ($variant) failed"; }
  done
  cp "$OUT/publish-v2/libplover.so" "$OUT/lib/libplover.so"
  cp "$OUT/publish-v3/libplover.so" "$OUT/lib/libplover.x86-64-v3.so"
  cp "$OUT/publish-v4/libplover.so" "$OUT/lib/libplover.x86-64-v4.so"
  dotnet publish "$ROOT/plugin/Plover.Cli/Plover.Cli.csproj" -c Release -nologo -v:q -o "$OUT/publish-cli" \
    > "$OUT/publish-cli.log" 2>&1 || { tail -30 "$OUT/publish-cli.log"; die "dotnet publish of the plover CLI failed"; }
  cp "$OUT/publish-cli/plover" "$OUT/bin/plover"
  echo "$key" > "$OUT/lib/.key"
}

# ---------------------------------------------------------------- guest image
guest_key() {
  { uname -m; ls /lib/modules; cat "$ROOT/tests-native/guest/init"; sha256sum /usr/bin/redis-check-rdb 2>/dev/null; } |
    sha256sum | cut -c1-16
}

# Copies a program and every shared library it loads (as ldd resolves them) into the guest root.
guest_install_program() {
  local root=$1 src=$2 dest=$3 lib
  install -D -m 755 "$(readlink -f "$src")" "$root$dest"
  for lib in $(ldd "$src" | grep -o '/[^ ]*'); do
    [ -e "$root$lib" ] || install -D -m 755 "$(readlink -f "$lib")" "$root$lib"
  done
}

setup_guest() {
  local kver key dir root m
  kver=$(ls /lib/modules | sort -V | tail -1)
  [ -f "/boot/vmlinuz-$kver" ] || die "no kernel /boot/vmlinuz-$kver (package linux-image-amd64)"
  key=$(guest_key)
  dir="$CACHE/guest-$key"
  GUEST_KERNEL="$dir/vmlinuz"
  GUEST_INITRD="$dir/initramfs.cpio.gz"
  [ -f "$GUEST_INITRD" ] && return 0
  log "building the guest initramfs (Debian kernel $kver, busybox, virtio-net, redis-server)"
  root=$(mktemp -d)
  mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,etc,lib/modules,usr/bin,usr/sbin,run,var}
  cp /bin/busybox "$root/bin/busybox"
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net e1000; do
    cp "$(modinfo -k "$kver" -n "$m")" "$root/lib/modules/$m.ko" || die "kernel module $m not found for $kver"
  done
  install -m 755 "$ROOT/tests-native/guest/init" "$root/init"
  # the replicated service: Debian's redis-server (a copy named redis-server: the binary acts by its name)
  guest_install_program "$root" /usr/bin/redis-server /usr/bin/redis-server
  mkdir -p "$dir.tmp"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$dir.tmp/initramfs.cpio.gz"
  cp "/boot/vmlinuz-$kver" "$dir.tmp/vmlinuz"
  rm -rf "$root" "$dir" && mv "$dir.tmp" "$dir"
}

# ---------------------------------------------------------------- benchmark plots
# The plots and the report use Debian's matplotlib, which is for /usr/bin/python3 (not a pyenv python3 on PATH).
# python3-munkres, -defcon and -unicodedata2 satisfy python3-fonttools' alternatives cheaply (otherwise apt takes
# python3-scipy, sympy and a C++ toolchain for pythran). Installed once, only by `bench`, never by setup or test:
# about 35 packages, 34 MB, half a minute.
PLOT_PYTHON=/usr/bin/python3
PLOT_PACKAGES=(python3-matplotlib python3-munkres python3-defcon python3-unicodedata2)
REPORT="$ROOT/tests-native/bench/report/report.py"

setup_plotting() {
  "$PLOT_PYTHON" -c 'import matplotlib' 2>/dev/null && return 0
  [ "$(id -u)" = 0 ] || { echo "build.sh: matplotlib missing for $PLOT_PYTHON and not root: apt-get install ${PLOT_PACKAGES[*]}" >&2; return 1; }
  log "installing Debian's python3-matplotlib for the benchmark plots (once; about 35 packages, half a minute)"
  apt-get update -q >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 \
    "${PLOT_PACKAGES[@]}" >/dev/null || { echo "build.sh: apt-get install ${PLOT_PACKAGES[*]} failed" >&2; return 1; }
  "$PLOT_PYTHON" -c 'import matplotlib'
}

# After a benchmark: its plots beside its JSON. Never fails the benchmark: a missing library or a plotting error is
# a warning.
bench_plots() {
  local name=$1
  [ -f "$ARTIFACTS/bench/$name.json" ] || return 0
  if ! setup_plotting; then
    echo "build.sh: warning: no plots for $name.json (matplotlib unavailable); the benchmark's results stand" >&2
    return 0
  fi
  "$PLOT_PYTHON" "$REPORT" --dir "$ARTIFACTS/bench" --plot "$name" --no-html ||
    echo "build.sh: warning: plotting $name.json failed (see above); the benchmark's results stand" >&2
  return 0
}

# ---------------------------------------------------------------- fuzzing
# AFL++ is installed once, only by `fuzz`, never by setup or test (the tests replay the corpus without it).
setup_afl() {
  command -v afl-fuzz >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "afl-fuzz missing and not root: apt-get install afl++"
  log "installing Debian's afl++ for fuzzing (once)"
  apt-get update -q >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 afl++ >/dev/null ||
    die "apt-get install afl++ failed"
}

# ---------------------------------------------------------------- env
resolve_artifacts() {  # sets QEMU, GUEST_* from the cache without building
  local dsc
  dsc=$(ls -1 "$CACHE"/src/qemu_*.dsc 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$dsc" ] && QEMU="$CACHE/qemu-$(qemu_key "$dsc")/bin/qemu-system-x86_64" || QEMU=""
  GUEST_KERNEL="$CACHE/guest-$(guest_key)/vmlinuz"
  GUEST_INITRD="$CACHE/guest-$(guest_key)/initramfs.cpio.gz"
}

print_env() {
  cat <<EOF
PLOVER_QEMU=$QEMU
PLOVER_LIB=$OUT/lib/libplover.so
PLOVER_CLI=$OUT/bin/plover
PLOVER_KERNEL=$GUEST_KERNEL
PLOVER_INITRD=$GUEST_INITRD
PLOVER_FIRMWARE=-L /usr/share/seabios -L /usr/lib/ipxe/qemu -L /usr/share/qemu
PLOVER_ARTIFACTS=$ARTIFACTS
EOF
}

export_env() {
  local line
  while IFS= read -r line; do export "${line?}"; done < <(print_env)
}

setup() {
  setup_packages
  mkdir -p "$CACHE" "$OUT" "$ARTIFACTS"
  setup_qemu
  setup_guest
  setup_library
  export_env
}

# ---------------------------------------------------------------- tests
build_native_tests() {
  log "building the native test harness"
  cmake -S "$ROOT/tests-native" -B "$OUT/native" -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$OUT/native-cmake.log" 2>&1 ||
    { cat "$OUT/native-cmake.log"; die "cmake failed"; }
  cmake --build "$OUT/native" -j"$JOBS" > "$OUT/native-build.log" 2>&1 ||
    { tail -40 "$OUT/native-build.log"; echo "build.sh: native test build failed" >&2; return 1; }
}

run_tests() {
  local managed_rc=0 native_rc=0 line mp=0 mf=0 ms=0 np=0 nf=0 ns=0
  log "managed tests (xunit)"
  dotnet test "$ROOT/tests-managed/Plover.Tests.csproj" -c Release -nologo > "$OUT/managed-tests.log" 2>&1 || managed_rc=$?
  grep -E '^\s+Failed |^\s+Skipped |error [A-Z]+[0-9]+|(Passed|Failed)! ' "$OUT/managed-tests.log" | head -60 || true
  # xunit's summary: "Passed!  - Failed:     0, Passed:   123, Skipped:     0, Total:   123, Duration: ..."
  line=$(grep -E '(Passed|Failed)! +- Failed:' "$OUT/managed-tests.log" | tail -1 || true)
  if [ -n "$line" ]; then
    mf=$(sed -E 's/.*Failed: *([0-9]+).*/\1/' <<<"$line"); mp=$(sed -E 's/.*Passed: *([0-9]+).*/\1/' <<<"$line")
    ms=$(sed -E 's/.*Skipped: *([0-9]+).*/\1/' <<<"$line")
  else
    tail -30 "$OUT/managed-tests.log"; mf=1
  fi
  [ "$managed_rc" = 0 ] || [ "$mf" != 0 ] || mf=1
  build_native_tests || native_rc=$?
  log "native and end-to-end tests (GoogleTest under ctest)"
  ctest --test-dir "$OUT/native" --output-on-failure -j1 --timeout 900 2>&1 | tee "$OUT/native-tests.log" || true
  native_rc=${PIPESTATUS[0]}
  # ctest's summary: "97% tests passed, 1 tests failed out of 40"
  line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$OUT/native-tests.log" | tail -1 || true)
  if [ -n "$line" ]; then
    nf=$(sed -E 's/.* ([0-9]+) tests failed out of.*/\1/' <<<"$line")
    np=$(( $(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line") - nf ))
    ns=$(grep -cE '\*\*\*Skipped|Not Run' "$OUT/native-tests.log" || true)
    np=$((np - ns))
  else
    nf=$((nf + 1))
  fi
  [ "$native_rc" = 0 ] || [ "$nf" != 0 ] || nf=1
  # CI shows only the tail of this output: name the failures again, last.
  if [ "$mf" != 0 ]; then
    echo "managed failures (full log: $OUT/managed-tests.log):"
    grep -E -A4 '^\s+Failed [A-Za-z]' "$OUT/managed-tests.log" | cut -c1-300 | head -40 || true
  fi
  [ "$nf" = 0 ] || { echo "native failures:"; grep -E '\*\*\*Failed|\(Failed\)|\(Timeout\)' "$OUT/native-tests.log" | head -20 || true; }
  echo "managed: $mp passed, $mf failed, $ms skipped; native: $np passed, $nf failed, $ns skipped"
  echo "$((mp + np)) passed, $((mf + nf)) failed, $((ms + ns)) skipped"
  [ $((mf + nf)) = 0 ]
}

# ---------------------------------------------------------------- main
cmd=${1:-}
case "$cmd" in
  setup) setup; print_env ;;
  env) resolve_artifacts; print_env ;;
  test) setup; run_tests ;;
  demo) setup; exec "$ROOT/tests-native/demo/demo.sh" ;;
  fuzz) dotnet_env; [ -z "${2:-}" ] || setup_afl; exec "$ROOT/fuzz/fuzz.sh" "${@:2}" ;;
  bench)
    name=${2:-}; benches=$(ls "$ROOT/tests-native/bench" | sed -n 's/\.sh$//p' | tr '\n' ' ')
    [ -n "$name" ] || die "usage: ./build.sh bench NAME [ARGS...] (one of: ${benches}report)"
    case "$name" in
      report)   # plots of every JSON present, then the page; --test: the report's own test on fixtures instead
        setup_plotting || die "the report needs matplotlib for $PLOT_PYTHON (apt-get install ${PLOT_PACKAGES[*]})"
        if [ "${3:-}" = --test ]; then exec "$PLOT_PYTHON" "$ROOT/tests-native/bench/report/test_report.py"; fi
        mkdir -p "$ARTIFACTS/bench"
        exec "$PLOT_PYTHON" "$REPORT" --dir "$ARTIFACTS/bench" "${@:3}" ;;
    esac
    [ -f "$ROOT/tests-native/bench/$name.sh" ] || die "no benchmark '$name' (have: ${benches}report)"
    setup; mkdir -p "$ARTIFACTS/bench"
    rc=0; bash "$ROOT/tests-native/bench/$name.sh" "${@:3}" || rc=$?
    [ "$rc" = 0 ] && bench_plots "$name"
    exit "$rc" ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; [ -z "$cmd" ] || die "unknown command '$cmd'"; exit 2 ;;
esac
