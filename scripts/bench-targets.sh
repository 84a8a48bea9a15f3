#!/usr/bin/env bash
# The issue-5 target table: m2m vs iperf3, downloads and uploads vs globus-url-copy +
# globus-gridftp-server, stream mode and -p 4, medians of 5 interleaved runs, same invocation.
# Writes bench-targets.{txt,csv,svg} in the current directory. Run on a quiet machine.
#   scripts/bench-targets.sh [SIZE]   (default 2G)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-2G}
cargo build --release --quiet
./target/release/ringmover bench --size "$size" --runs 5 --streams 1,4 \
    --scenarios m2m,download,upload --csv bench-targets.csv --svg bench-targets.svg | tee bench-targets.txt
