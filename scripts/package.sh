#!/usr/bin/env bash
# Builds the packages: the release binary, its man pages and shell completions (generated from
# the clap definitions), then target/debian/*.deb (cargo-deb) and, where cargo-generate-rpm is
# installed, target/generate-rpm/*.rpm. Install the tools with
#   cargo install cargo-deb cargo-generate-rpm --locked
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
bin=target/release/ringmover
rm -rf target/pkg
mkdir -p target/pkg/completions
"$bin" man target/pkg/man >/dev/null
"$bin" completions bash >target/pkg/completions/ringmover.bash
"$bin" completions zsh >target/pkg/completions/_ringmover
"$bin" completions fish >target/pkg/completions/ringmover.fish

cargo deb --no-build
if command -v cargo-generate-rpm >/dev/null; then
    cargo generate-rpm
else
    echo "cargo-generate-rpm not installed: no .rpm built" >&2
fi
ls -l target/debian/*.deb target/generate-rpm/*.rpm 2>/dev/null || true
