#!/usr/bin/env bash
# End-to-end with separate processes: two demo backends and two gateway
# nodes (session-gateway processes) over one store, driven by the Python
# `mcp` SDK, checked with the `sessions` operator CLI.
#
#   gateway/tests/e2e-processes.sh STORE_URL [PYTHON]
#
# Needs a session-gateway built with the store's feature
# (cargo build -p session-gateway --features redis,postgres) and a Python
# with mcp==2.3.0 (default target/py-mcp/bin/python). Uses its own Redis key
# prefix / Postgres schema and removes it.
set -euo pipefail
cd "$(dirname "$0")/../.."
STORE=$1
PY=${2:-target/py-mcp/bin/python}
BIN=target/debug/session-gateway
TAG=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
case "$STORE" in
  redis*) PREFIX="gwe2e:$TAG:" ;;
  postgres*) PREFIX="gwe2e_$TAG" ;;
  *) echo "store must be redis:// or postgres://"; exit 2 ;;
esac
BASE=$((10000 + RANDOM % 20000))  # below the ephemeral port range
MATH=127.0.0.1:$BASE TEXT=127.0.0.1:$((BASE + 1)) A=127.0.0.1:$((BASE + 2)) B=127.0.0.1:$((BASE + 3))
DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  case "$STORE" in
    postgres*) psql "$STORE" -qc "DROP SCHEMA IF EXISTS \"$PREFIX\" CASCADE" >/dev/null 2>&1 || true ;;
  esac
  rm -rf "$DIR"
}
trap cleanup EXIT
cat > "$DIR/gateway.toml" <<TOML
store = "$STORE"
store_prefix = "$PREFIX"
policy = "every-access"  # "A answers 404 at once" after a DELETE on B is the every-access guarantee
[backends]
math = "http://$MATH/mcp"
text = "http://$TEXT/mcp"
[tokens]
"owner-token" = { issuer = "https://idp.test", subject = "alice" }
"other-token" = { issuer = "https://idp.test", subject = "mallory" }
TOML
$BIN demo-backend math --listen "$MATH" > "$DIR/math.log" 2>&1 & PIDS+=($!)
$BIN demo-backend text --listen "$TEXT" > "$DIR/text.log" 2>&1 & PIDS+=($!)
$BIN --config "$DIR/gateway.toml" --listen "$A" > "$DIR/a.log" 2>&1 & PIDS+=($!)
$BIN --config "$DIR/gateway.toml" --listen "$B" > "$DIR/b.log" 2>&1 & PIDS+=($!)
for u in "http://$A/readyz" "http://$B/readyz" "http://$MATH/admin/sessions" "http://$TEXT/admin/sessions"; do
  for _ in $(seq 1 100); do curl -sf "$u" >/dev/null && break; sleep 0.1; done
  curl -sf "$u" >/dev/null || { echo "not up: $u"; cat "$DIR"/*.log; exit 1; }
done
SESSIONS_SHOW=$(printf '["%s","sessions","show","--json","--show-values","--store","%s","--store-prefix","%s"]' "$PWD/$BIN" "$STORE" "$PREFIX") \
  "$PY" gateway/tests/python/e2e_client.py "http://$A/mcp" "http://$B/mcp" "http://$MATH" owner-token other-token \
  || { echo "--- node A log"; tail -30 "$DIR/a.log"; echo "--- node B log"; tail -30 "$DIR/b.log"; exit 1; }
curl -sf "http://$A/metrics" | grep -q '^gateway_backend_calls_total' || { echo "no gateway metrics on /metrics"; exit 1; }
left=$($BIN sessions list --store "$STORE" --store-prefix "$PREFIX" | tail -1)
[ "$left" = "0 session(s)" ] || { echo "sessions left in storage: $left"; exit 1; }
for p in "${PIDS[@]}"; do kill -TERM "$p"; done
for p in "${PIDS[@]}"; do wait "$p" || { echo "a process did not exit cleanly on SIGTERM"; exit 1; }; done
PIDS=()
echo "e2e-processes on ${STORE%%://*}: ok"
