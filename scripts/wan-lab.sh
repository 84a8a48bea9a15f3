#!/usr/bin/env bash
# A WAN lab on one host: namespaces <P>-client (10.77.0.1) and <P>-server (10.77.0.2) joined
# by `ringmover wan-emu` over two TUN devices (no tc netem needed).
#   scripts/wan-lab.sh up [wan-emu options: --delay 25ms --loss 0.01% --rate 1gbit ...]
#   scripts/wan-lab.sh down | status
#   ip netns exec <P>-server ringmover serve ...; ip netns exec <P>-client ringmover copy ...
# Env: WAN_LAB_PREFIX (default rm; 1-8 letters/digits, it names the TUN devices), RINGMOVER
# (the binary; default: the newer of target/release and target/debug). Needs root.
set -euo pipefail
P=${WAN_LAB_PREFIX:-rm}
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${RINGMOVER:-}
if [ -z "$BIN" ]; then
    for b in "$here/target/release/ringmover" "$here/target/debug/ringmover"; do
        [ -x "$b" ] && { [ -z "$BIN" ] || [ "$b" -nt "$BIN" ]; } && BIN=$b
    done
fi
[ -n "$BIN" ] || { echo "wan-lab.sh: no ringmover binary: cargo build, or set RINGMOVER" >&2; exit 1; }

case "${1:-}" in
    up) shift; exec "$BIN" wan-lab up --prefix "$P" "$@" ;;
    down) exec "$BIN" wan-lab down --prefix "$P" ;;
    status)
        ip netns list | grep -E "^$P-(client|server)( |$)" || echo "no lab namespaces"
        pidf=/run/ringmover-wan-lab-$P/emu.pid
        if [ -f "$pidf" ]; then ps -o pid=,args= -p "$(cat "$pidf")" || echo "no emulator"; else echo "no emulator"; fi
        ;;
    *) sed -n '2,8p' "$0"; exit 2 ;;
esac
