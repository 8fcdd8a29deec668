#!/usr/bin/env bash
# ./build.sh demo runs this with the built artifacts in the environment (see ./build.sh env).
set -euo pipefail
exec python3 "$(dirname "$0")/demo.py" "$@"
