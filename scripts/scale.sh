#!/bin/bash
# Scaling over cores (issue 12, item 6): for N streams, in one run and on one host,
#   - N iperf3 pairs (iperf3 3.x is single-threaded: one pair per core is its best),
#   - ringmover memory to memory, one transfer with N streams (`bench --scenarios m2m`),
#   - one tmpfs file into /dev/null: `ringmover copy -p N` from `ringmover serve`, and
#     globus-url-copy -p N from globus-gridftp-server, and N globus-url-copy sessions each
#     fetching 1/N of the file (-off/-len).
# Prints one table row per N with GB/s and the ratios to the iperf3 pairs.
#
#   bash scripts/scale.sh [BINARY] [PEERS_DIR]
# BINARY: the release binary (default target/release/ringmover). PEERS_DIR: a folder made by
# a bundle of the peers (bin/ and lib/), for a machine without the Debian packages.
# Environment: NS (default "1 2 4 8 16"), FILE_GIB (default 8), M2M_GIB per stream (default 2).
# Needs: bash, awk, date, taskset, iperf3, globus-url-copy, globus-gridftp-server.
set -euo pipefail
BIN=$(realpath "${1:-target/release/ringmover}")
PEERS=${2:-}
if [ -n "$PEERS" ]; then
  PEERS=$(realpath "$PEERS")
  export PATH="$PEERS/bin:$PATH" LD_LIBRARY_PATH="$PEERS/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
for tool in iperf3 globus-url-copy globus-gridftp-server taskset awk; do
  command -v $tool > /dev/null || { echo "scale.sh: $tool not found (install it, or pass a peers folder)" >&2; exit 1; }
done
NS=${NS:-1 2 4 8 16}
FILE_GIB=${FILE_GIB:-8}
M2M_GIB=${M2M_GIB:-2}
CPUS=$(nproc)
HALF=$(( CPUS / 2 > 0 ? CPUS / 2 : 1 ))
WORK=/dev/shm/rm-scale
GIB=1073741824
mkdir -p $WORK/root
chmod 1777 $WORK/root
FILE=$WORK/root/f
SIZE=$(( FILE_GIB * GIB ))
[ "$(stat -c %s $FILE 2>/dev/null || echo 0)" = "$SIZE" ] || head -c $SIZE /dev/zero > $FILE
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done; }
trap cleanup EXIT

now() { date +%s%N; }
gbps() { awk -v b="$1" -v s="$2" -v e="$3" 'BEGIN { printf "%.2f", b / ((e - s) / 1e9) / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
# Waits until something listens on port $1 (read from /proc: a probe connection would be
# taken by a one-shot iperf3 server as its client).
wait_port() {
  local hex
  hex=$(printf '%04X' $1)
  for _ in $(seq 100); do
    awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" { found = 1 } END { exit !found }' /proc/net/tcp /proc/net/tcp6 && return 0
    sleep 0.1
  done
  echo "scale.sh: nothing listens on port $1" >&2
  return 1
}

# N iperf3 pairs, client i on CPU i mod HALF, server i on HALF + i mod HALF; PER bytes each.
iperf_pairs() {
  local n=$1 per=$2 pids=() s e
  for i in $(seq 0 $((n - 1))); do
    taskset -c $(( HALF + i % HALF )) iperf3 -s -1 -p $((5300 + i)) > /dev/null 2>&1 &
    PIDS+=($!)
  done
  for i in $(seq 0 $((n - 1))); do wait_port $((5300 + i)); done
  s=$(now)
  for i in $(seq 0 $((n - 1))); do
    taskset -c $(( i % HALF )) iperf3 -c 127.0.0.1 -p $((5300 + i)) -n $per > /dev/null 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait $p || { echo "scale.sh: an iperf3 client failed" >&2; exit 1; }; done
  e=$(now)
  gbps $(( n * per )) $s $e
}

# ringmover memory to memory: one transfer of N streams (sender and receiver engines on the
# two halves of the CPUs); the better of its sendfile and send rows.
ringmover_m2m() {
  local n=$1 csv=$WORK/m2m.csv
  "$BIN" bench --scenarios m2m --streams $n --runs 1 --size $(( n * M2M_GIB * GIB )) --no-peers --csv $csv > /dev/null
  awk -F, 'NR > 1 && $1 == "m2m" { if ($8 > best) best = $8 } END { printf "%.2f", best }' $csv
}

# One timed command; prints GB/s for BYTES.
timed() {
  local bytes=$1 s e
  shift
  s=$(now)
  "$@" > /dev/null 2>&1 || { echo "scale.sh: failed: $*" >&2; exit 1; }
  e=$(now)
  gbps $bytes $s $e
}

"$BIN" serve --root $WORK/root --listen 127.0.0.1:2998 > /dev/null 2>&1 &
PIDS+=($!)
GCONF=$WORK/gridftp.conf
: > $GCONF
GEXEC=$(command -v globus-gridftp-server)
ANON=()
[ "$(id -u)" = 0 ] && ANON=(-anonymous-user nobody)
globus-gridftp-server -c $GCONF -exec "$GEXEC" -aa -s -p 2997 -control-interface 127.0.0.1 \
  -data-interface 127.0.0.1 -d error -l $WORK/gridftp.log "${ANON[@]}" > /dev/null 2>&1 &
PIDS+=($!)
wait_port 2998
wait_port 2997

echo "scale.sh: $(date -u +%FT%TZ), $CPUS CPUs, $(uname -r), file ${FILE_GIB} GiB, m2m ${M2M_GIB} GiB per stream"
printf '%4s %14s %16s %8s %18s %8s %16s %18s\n' N "iperf3 pairs" "ringmover m2m" "x pairs" "ringmover tmpfs" "x pairs" "guc -p N tmpfs" "N guc sessions"
for n in $NS; do
  pairs=$(iperf_pairs $n $(( M2M_GIB * GIB )))
  m2m=$(ringmover_m2m $n)
  cores=$(( n < HALF ? n : HALF ))
  ours=$(timed $SIZE "$BIN" copy -q -p $n --cores $cores ftp://127.0.0.1:2998/f /dev/null)
  guc=$(timed $SIZE globus-url-copy -p $n ftp://127.0.0.1:2997$FILE file:///dev/null)
  part=$(( SIZE / n ))
  s=$(now)
  gpids=()
  for i in $(seq 0 $((n - 1))); do
    globus-url-copy -off $(( i * part )) -len $part ftp://127.0.0.1:2997$FILE file:///dev/null > /dev/null 2>&1 &
    gpids+=($!)
  done
  for p in "${gpids[@]}"; do wait $p || { echo "scale.sh: a globus-url-copy session failed" >&2; exit 1; }; done
  sessions=$(gbps $(( n * part )) $s $(now))
  printf '%4s %14s %16s %8s %18s %8s %16s %18s\n' $n $pairs $m2m $(ratio $m2m $pairs) $ours $(ratio $ours $pairs) $guc $sessions
done
