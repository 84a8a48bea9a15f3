#!/usr/bin/env bash
# Checks the .deb that scripts/package.sh built: unpacks it into a scratch root (dpkg -x, as a
# container image would hold it), checks what it installs, validates the example config with
# the installed binary, and copies a file from the installed binary's server with
# globus-url-copy (byte-identical). Fails loudly if a peer or tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

deb=$(ls -t target/debian/ringmover_*.deb | head -1)
scratch=$(mktemp -d /tmp/ringmover-pkg.XXXXXX)
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

command -v globus-url-copy >/dev/null || { echo "package-check: globus-url-copy is missing" >&2; exit 1; }
[ "$(dpkg-deb --field "$deb" Package)" = ringmover ] || { echo "package-check: $deb is not the ringmover package" >&2; exit 1; }
root="$scratch/root"
dpkg-deb -x "$deb" "$root"

for f in usr/bin/ringmover \
    usr/share/man/man1/ringmover.1.gz usr/share/man/man1/ringmover-serve.1.gz usr/share/man/man1/ringmover-pool.1.gz \
    usr/share/bash-completion/completions/ringmover usr/share/zsh/vendor-completions/_ringmover \
    usr/share/fish/vendor_completions.d/ringmover.fish \
    lib/systemd/system/ringmover-serve.service lib/systemd/system/ringmover-door.service \
    lib/systemd/system/ringmover-pool@.service \
    etc/ringmover/ringmover.toml usr/share/doc/ringmover/examples/pool-a.toml; do
    [ -s "$root/$f" ] || { echo "package-check: $f missing from $deb" >&2; exit 1; }
done
for unit in "$root"/lib/systemd/system/*.service; do
    for key in ProtectSystem=strict NoNewPrivileges=yes CapabilityBoundingSet= LimitMEMLOCK= LimitNOFILE=; do
        grep -q "^$key" "$unit" || { echo "package-check: $unit lacks $key" >&2; exit 1; }
    done
done
if command -v systemd-analyze >/dev/null; then
    for unit in "$root"/lib/systemd/system/*.service; do
        # Missing executables are expected outside an installed system; bad keys are not.
        bad=$(systemd-analyze verify "$unit" 2>&1 | grep -E "Unknown|Failed to parse|Invalid|ignoring" || true)
        [ -z "$bad" ] || { echo "package-check: $unit: $bad" >&2; exit 1; }
    done
fi
bin="$root/usr/bin/ringmover"
"$bin" --version

# The installed example configuration, pointed at scratch directories, passes config check.
mkdir -p "$scratch/data"
"$bin" link-key a --keys "$scratch/pool-keys" >/dev/null
sed -e "s|/srv/ringmover/data|$scratch/data|" -e "s|/etc/ringmover/pool-keys|$scratch/pool-keys|" \
    "$root/etc/ringmover/ringmover.toml" >"$scratch/ringmover.toml"
"$bin" config check --role serve --role door "$scratch/ringmover.toml"

# The installed binary serves a file to globus-url-copy.
head -c 10000000 /dev/urandom >"$scratch/data/file"
"$bin" serve --root "$scratch/data" --listen 127.0.0.1:0 >"$scratch/out" 2>"$scratch/log" &
server=$!
for _ in $(seq 100); do
    grep -q "listening on" "$scratch/out" && break
    sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$scratch/out")
[ -n "$addr" ] || { cat "$scratch/log" >&2; exit 1; }
globus-url-copy "ftp://$addr/file" "file://$scratch/copy"
cmp "$scratch/data/file" "$scratch/copy"
echo "package-check: $deb installs and serves globus-url-copy"
