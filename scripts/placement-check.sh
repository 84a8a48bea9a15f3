#!/bin/bash
# Placement check: 20 consecutive default-option `ringmover copy` stream downloads of a 2 GiB
# tmpfs file into /dev/null from a default-option `ringmover serve` on the same host (no
# taskset). Prints each wall time, then min, median, max and max/min (target <= 1.3: no run
# where the client's and the server's engine threads shared a CPU).
#   cargo build --release && bash scripts/placement-check.sh [BINARY]
set -euo pipefail
BIN=${1:-target/release/ringmover}
ROOT=/dev/shm/rm-twenty
mkdir -p $ROOT; [ -f $ROOT/f ] || head -c 2147483648 /dev/zero > $ROOT/f
$BIN serve --root $ROOT --listen 127.0.0.1:2999 > /dev/null 2>&1 &
SP=$!
sleep 1
TIMES=()
for i in $(seq 20); do
  s=$(date +%s%N); $BIN copy -q ftp://127.0.0.1:2999/f /dev/null; e=$(date +%s%N)
  t=$(( (e - s) / 1000000 )); TIMES+=($t); echo "run $i: $t ms"
done
kill $SP; wait $SP 2>/dev/null || true
sorted=($(printf '%s\n' "${TIMES[@]}" | sort -n))
min=${sorted[0]}; max=${sorted[19]}; med=$(( (sorted[9] + sorted[10]) / 2 ))
echo "min $min ms, median $med ms, max $max ms, max/min $(awk "BEGIN{printf \"%.2f\", $max/$min}")"
