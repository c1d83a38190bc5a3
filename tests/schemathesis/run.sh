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
# Request-rate limits out of reach (they are tested elsewhere), so every example reaches a handler.
PLATFORM_DATA_DIR="$data/data" PLATFORM_LISTEN="127.0.0.1:$port" PLATFORM_ADMIN_TOKEN="$token" \
    PLATFORM_RATE_LIMIT_ADMIN_IP=1000000/1000000 PLATFORM_RATE_LIMIT_PRINCIPAL=1000000/1000000 \
    PLATFORM_RATE_LIMIT_TENANT_DEFAULT=1000000/1000000 PLATFORM_RATE_LIMIT_SENSITIVE_IP=1000000/1000000 \
    PLATFORM_AUTH_FAILURES_PER_ADDRESS=1000000/1s PLATFORM_AUTH_FAILURES_PER_TENANT=1000000/1s \
    PLATFORM_LOG_FORMAT=json RUST_LOG=warn "$bin" > "$data/platform.log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
# Python's standard library for the HTTP calls (a fresh machine may have no curl).
"$here/.venv/bin/python" - "$base" "$token" "$pid" > "$data/key" <<'PY'
import json, os, sys, time, urllib.request
base, token, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
def call(method, path, body=None, auth=True):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", **({"authorization": "Bearer " + token} if auth else {})})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")
deadline = time.time() + 120
while True:
    try:
        call("GET", "/healthz", auth=False)
        break
    except Exception:
        os.kill(pid, 0)  # the server exited: fail
        if time.time() > deadline:
            raise
        time.sleep(0.2)
# A plan far above what the fuzzer sends: every example reaches its handler.
call("PUT", "/admin/v1/plans/fuzz", {"requests_per_second": 1000000, "burst": 1000000, "audit_retention_days": 30})
call("POST", "/admin/v1/tenants", {"slug": "fuzz", "name": "Fuzz", "plan": "fuzz"})
print(call("POST", "/admin/v1/tenants/fuzz/api-keys", {"name": "fuzz", "role": "admin"})["key"])
PY
key="$(cat "$data/key")"

st="$here/.venv/bin/schemathesis"
checks="not_a_server_error,response_schema_conformance,content_type_conformance"
common=(run "$base/openapi.json" --checks "$checks" --max-examples "$examples"
        --generation-deterministic --suppress-health-check all)
echo "== schemathesis: tenant API as a tenant admin"
"$st" "${common[@]}" --include-path-regex '^/api/v1/(?!auth/)' -H "Authorization: Bearer $key"
echo "== schemathesis: admin API as the operator"
"$st" "${common[@]}" --include-path-regex '^/admin/v1/' -H "Authorization: Bearer $token"
