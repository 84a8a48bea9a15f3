#!/usr/bin/env bash
# End-to-end smoke run of the README example: builds the release binary, serves a scratch root,
# and moves a file down and up with the real globus-url-copy, comparing bytes and printing the
# server's transfer log lines.
#   scripts/smoke-guc.sh [SIZE_MIB]     (default 256)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-256}
command -v globus-url-copy >/dev/null || { echo "globus-url-copy missing: apt-get install globus-gass-copy-progs" >&2; exit 1; }
cargo build --release --quiet
work=$(mktemp -d /dev/shm/rm-smoke.XXXXXX)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/root" "$work/client"
head -c "$((size << 20))" /dev/urandom > "$work/root/src.bin"
echo smoke-password | ./target/release/ringmover passwd smoke --users "$work/users" 2>/dev/null
./target/release/ringmover serve --root "$work/root" --listen 127.0.0.1:0 --users "$work/users" \
    > "$work/stdout" 2> "$work/log" &
pid=$!
for _ in $(seq 50); do grep -q "listening on" "$work/stdout" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$work/stdout")
echo "server on $addr, ${size} MiB"
time globus-url-copy "ftp://$addr/src.bin" "file://$work/client/down.bin"
cmp "$work/root/src.bin" "$work/client/down.bin"
time globus-url-copy "file://$work/client/down.bin" "ftp://smoke:smoke-password@$addr/up.bin"
cmp "$work/root/src.bin" "$work/root/up.bin"
grep "ringmover::transfer" "$work/log"
echo "smoke run OK"
