#!/usr/bin/env bash
# The module layering (docs/design.md), checked: each top-level module of src/ may name only the
# modules below it. Test modules (after `#[cfg(test)]`) and comments are not counted.
#   scripts/layers.sh          check; exit 1 on a forbidden edge
#   scripts/layers.sh --edges  print every module's edges
set -euo pipefail
cd "$(dirname "$0")/../src"

# What each module may use (besides std and crates). Leaves name nothing.
declare -A ALLOWED=(
    [block]=""
    [metrics]=""
    [storage]="metrics"
    [units]=""
    [secrets]=""
    [gsi]=""
    [peers]=""
    [protocol]="block peers units"
    [engine]="block metrics"
    [link]="block gsi peers protocol secrets storage"
    [pool]="block engine gsi link metrics peers storage"
    [door]="block engine gsi link metrics peers pool protocol secrets"
    [client]="block engine gsi link peers pool protocol storage units"
    [tune]="engine units"
    [wan]="units"
    [bench]="door engine peers units wan"
    [cli]="bench client door engine gsi link metrics peers pool protocol storage tune units wan"
)

# Source of a module without its test modules and comments.
code_of() {
    local m=$1 files
    if [ -d "$m" ]; then files=$(find "$m" -name '*.rs' | sort); else files="$m.rs"; fi
    for f in $files; do
        awk '/^[[:space:]]*#\[cfg\(test\)\]/{exit} {print}' "$f"
    done | sed -e 's://.*$::'
}

edges_of() {
    code_of "$1" | grep -oE 'crate::[a-z_]+' | sed 's/crate:://' | sort -u | grep -vx "$1" || true
}

status=0
for m in $(printf '%s\n' "${!ALLOWED[@]}" | sort); do
    edges=$(edges_of "$m" | tr '\n' ' ')
    if [ "${1:-}" = "--edges" ]; then
        printf '%-9s -> %s\n' "$m" "$edges"
        continue
    fi
    for e in $edges; do
        if [[ " ${ALLOWED[$m]} " != *" $e "* ]]; then
            echo "layering: $m/ uses crate::$e (allowed: ${ALLOWED[$m]:-nothing})" >&2
            status=1
        fi
    done
done

# protocol/ and block/ stay sans-IO: no sockets, files, clocks or rings.
if code_of protocol | grep -nE 'tokio|std::net::Tcp|std::fs|Instant::now|SystemTime::now|io_uring' ||
    code_of block | grep -nE 'tokio|std::net::Tcp|std::fs|Instant::now|SystemTime::now|io_uring'; then
    echo "layering: protocol/ or block/ names I/O or clocks" >&2
    status=1
fi
# gsi/ opens no sockets either: tokens in, tokens out (it reads credential files and the clock);
# a data channel's record layer may be handed a stream by its caller (`Channel::attach`).
if code_of gsi | grep -nE 'tokio|std::net::Tcp|io_uring'; then
    echo "layering: gsi/ names sockets" >&2
    status=1
fi
exit $status
