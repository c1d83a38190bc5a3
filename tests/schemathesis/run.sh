#!/usr/bin/env bash
# Schemathesis (PyPI) against the real `platform` binary, over its own OpenAPI document:
# authenticated as a tenant admin (API key) on the tenant API and as the operator on the admin
# API, with a bounded number of examples per operation. Fails on any 5xx, any response that does
# not match the document's schema or content type, and any error that is not problem+json.
#
#   bash tests/schemathesis/run.sh [path/to/platform]      (default: target/debug/platform)
#
# Installs schemathesis into tests/schemathesis/.venv (pinned by requirements.txt) on first use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-$root/target/debug/platform}"
examples="${SCHEMATHESIS_EXAMPLES:-10}"

if [ ! -f "$here/.venv/.installed" ] || [ "$here/requirements.txt" -nt "$here/.venv/.installed" ]; then
    echo "== installing schemathesis (pip)"
    rm -rf "$here/.venv"
    python3 -m venv "$here/.venv"
    "$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    touch "$here/.venv/.installed"
fi

data="$(mktemp -d /tmp/platform-schemathesis.XXXXXX)"
chmod 755 "$data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token="schemathesis-operator-token-0123456789"
base="http://127.0.0.1:$port"
PLATFORM_DATA_DIR="$data/data" PLATFORM_LISTEN="127.0.0.1:$port" PLATFORM_ADMIN_TOKEN="$token" \
    PLATFORM_LOG_FORMAT=json RUST_LOG=warn "$bin" > "$data/platform.log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 600); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$data/platform.log"; echo "platform exited" >&2; exit 1; }
    sleep 0.2
done
curl -fsS "$base/healthz" >/dev/null

api() { curl -fsS -H "Authorization: Bearer $token" -H 'content-type: application/json' "$@"; }
api -XPOST "$base/admin/v1/tenants" -d '{"slug":"fuzz","name":"Fuzz","plan":"pro"}' >/dev/null
key=$(api -XPOST "$base/admin/v1/tenants/fuzz/api-keys" -d '{"name":"fuzz","role":"admin"}' \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

st="$here/.venv/bin/schemathesis"
checks="not_a_server_error,response_schema_conformance,content_type_conformance"
common=(run "$base/openapi.json" --checks "$checks" --max-examples "$examples"
        --generation-deterministic --suppress-health-check all)
echo "== schemathesis: tenant API as a tenant admin"
"$st" "${common[@]}" --include-path-regex '^/api/v1/(?!auth/)' -H "Authorization: Bearer $key"
echo "== schemathesis: admin API as the operator"
"$st" "${common[@]}" --include-path-regex '^/admin/v1/' -H "Authorization: Bearer $token"
