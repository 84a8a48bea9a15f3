#!/usr/bin/env bash
# A WAN lab on one host: namespaces <P>-client and <P>-server joined by `ringmover wan-emu`
# over two TUN devices (no tc netem needed). Client 10.77.0.1, server 10.77.0.2.
#   scripts/wan-lab.sh up [wan-emu options: --delay 25ms --loss 0.01% --rate 1gbit ...]
#   scripts/wan-lab.sh down | status
#   ip netns exec <P>-server ringmover serve ...; ip netns exec <P>-client ringmover copy ...
# Env: WAN_LAB_PREFIX (default rm; short, it names the TUN devices), RINGMOVER (the binary).
# Needs root (namespaces, TUN).
set -euo pipefail
P=${WAN_LAB_PREFIX:-rm}
CLIENT=$P-client
SERVER=$P-server
TUN_C=${P}wan0
TUN_S=${P}wan1
STATE=${WAN_LAB_STATE:-/run/ringmover-wan-lab-$P}
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${RINGMOVER:-}
if [ -z "$BIN" ]; then
    # The newer of the release and debug builds.
    for b in "$here/target/release/ringmover" "$here/target/debug/ringmover"; do
        [ -x "$b" ] && { [ -z "$BIN" ] || [ "$b" -nt "$BIN" ]; } && BIN=$b
    done
fi

die() { echo "wan-lab.sh: $*" >&2; exit 1; }

down() {
    if [ -f "$STATE/emu.pid" ]; then
        kill "$(cat "$STATE/emu.pid")" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$(cat "$STATE/emu.pid")" 2>/dev/null || break; sleep 0.1; done
    fi
    ip netns del "$CLIENT" 2>/dev/null || true
    ip netns del "$SERVER" 2>/dev/null || true
    rm -rf "$STATE"
}

up() {
    [ -n "$BIN" ] || die "no ringmover binary: cargo build, or set RINGMOVER"
    [ "$(id -u)" = 0 ] || die "needs root"
    down
    mkdir -p "$STATE"
    ip netns add "$CLIENT"
    ip netns add "$SERVER"
    "$BIN" wan-emu --tun-a "$TUN_C" --tun-b "$TUN_S" "$@" >"$STATE/emu.out" 2>"$STATE/emu.log" &
    echo $! >"$STATE/emu.pid"
    for _ in $(seq 100); do grep -q '^ready' "$STATE/emu.out" 2>/dev/null && break; sleep 0.05; done
    grep -q '^ready' "$STATE/emu.out" || { cat "$STATE/emu.log" >&2; down; die "wan-emu did not start"; }
    ip link set "$TUN_C" netns "$CLIENT"
    ip link set "$TUN_S" netns "$SERVER"
    ip -n "$CLIENT" addr add 10.77.0.1 peer 10.77.0.2 dev "$TUN_C"
    ip -n "$SERVER" addr add 10.77.0.2 peer 10.77.0.1 dev "$TUN_S"
    for ns in "$CLIENT" "$SERVER"; do
        ip -n "$ns" link set lo up
    done
    ip -n "$CLIENT" link set "$TUN_C" up
    ip -n "$SERVER" link set "$TUN_S" up
    echo "wan-lab: $CLIENT (10.77.0.1) <-> $SERVER (10.77.0.2) through wan-emu $*"
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down; echo "wan-lab: down" ;;
    status)
        ip netns list | grep -E "^($CLIENT|$SERVER)( |$)" || echo "no lab namespaces"
        [ -f "$STATE/emu.pid" ] && ps -o pid=,args= -p "$(cat "$STATE/emu.pid")" || echo "no emulator"
        ;;
    *) sed -n '2,8p' "$0"; exit 2 ;;
esac
