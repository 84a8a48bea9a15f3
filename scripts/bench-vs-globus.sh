#!/usr/bin/env bash
# globus-url-copy downloads from ringmover and from globus-gridftp-server, measured the same way
# (scripts/peers/bench_peers.sh: tmpfs source -> /dev/null, medians, CPU-s/GB of client and
# server processes), one server right after the other. Prints both tables and the ratios.
#   scripts/bench-vs-globus.sh [RUNS] [GiB] [CASES...]   (default 5 1 guc_dl_stream guc_dl_p4)
# Needs globus-gass-copy-progs and globus-gridftp-server-progs; run on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
gib=${2:-1}
shift $(( $# > 2 ? 2 : $# ))
cases=${*:-guc_dl_stream guc_dl_p4}
cargo build --release --quiet
root=$(mktemp -d /dev/shm/rm-bench.XXXXXX)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$root"' EXIT
./target/release/ringmover serve --root "$root" --listen 127.0.0.1:0 > "$root.out" 2> "$root.log" &
pid=$!
for _ in $(seq 50); do grep -q "listening on" "$root.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/^listening on 127.0.0.1://p' "$root.out")
echo "== ringmover serve (port $port)"
PEER_FTP_PORT=$port PEER_FTP_ROOT=$root PEER_FTP_PID=$pid \
    bash scripts/peers/bench_peers.sh -n "$runs" -s "$gib" $cases | tee /tmp/rm-bench-ours.txt | grep -E "GB/s.*n="
echo "== globus-gridftp-server"
bash scripts/peers/bench_peers.sh -n "$runs" -s "$gib" $cases | tee /tmp/rm-bench-globus.txt | grep -E "GB/s.*n="
echo "== ratios (ringmover / globus): throughput, server CPU-s/GB"
python3 - <<'PY'
import re
def parse(p):
    out = {}
    for line in open(p):
        m = re.match(r'^(\S+)\s+([\d.]+) GB/s .*server ([\d.]+)\)', line)
        if m:
            out[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return out
ours, theirs = parse('/tmp/rm-bench-ours.txt'), parse('/tmp/rm-bench-globus.txt')
for case in ours:
    if case in theirs:
        (a, ac), (b, bc) = ours[case], theirs[case]
        print(f"{case:<22} throughput x{a / b:.2f}   server CPU x{ac / bc if bc else float('nan'):.2f}")
PY
rm -f "$root.out" "$root.log"
