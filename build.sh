#!/usr/bin/env bash
# Plover: set up, build, test, demo and benchmark. The work is done by build.ps1 (PowerShell 7.6.10, pinned as a
# .NET local tool in .config/dotnet-tools.json); this bootstrap restores that tool and runs it with the same
# arguments:
#
#   ./build.sh setup        install packages; build the patched QEMU (cached), libplover.so, the CLI, the guest
#   ./build.sh test         setup, then every test suite (managed, native, end to end)
#   ./build.sh demo [--disk] setup, then the replicated Redis demo (--disk: with a replicated disk the guest writes)
#   ./build.sh bench NAME   setup, then tests-native/bench/NAME.sh (hash, consensus, sync, e2e, disk), then its plots
#   ./build.sh bench report plots of every benchmark JSON present and one HTML page (artifacts/bench/report.html)
#   ./build.sh env          print the built artifacts as KEY=VALUE lines
#   ./build.sh fuzz [TARGET [SECONDS]]  coverage-guided fuzzing of TARGET with AFL++ (fuzz/README.md); no TARGET: the list
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# .NET is the machine's (the .NET 10 SDK on PATH, as before); no registry this project reaches serves it.
command -v dotnet > /dev/null || { echo "build.sh: dotnet not found: install the .NET 10 SDK (dotnet on PATH)" >&2; exit 1; }

# The local tools are found through the manifest of the current folder: run from the repository.
cd "$ROOT"
dotnet tool restore > "${TMPDIR:-/tmp}/plover-tool-restore.log" 2>&1 ||
  { cat "${TMPDIR:-/tmp}/plover-tool-restore.log" >&2; echo "build.sh: dotnet tool restore failed" >&2; exit 1; }
exec dotnet pwsh -NoLogo -NoProfile -NonInteractive -File "$ROOT/build.ps1" "$@"
