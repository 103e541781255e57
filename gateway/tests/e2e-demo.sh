#!/usr/bin/env bash
# End-to-end against `session-gateway --demo` as its own process on the
# memory store (two demo backends and two gateway nodes in one process),
# driven by the same Python `mcp` SDK scenario as e2e-processes.sh.
#
#   gateway/tests/e2e-demo.sh [PYTHON]
#
# Needs target/debug/session-gateway (cargo build -p session-gateway) and a
# Python with mcp==2.3.0 (default target/py-mcp/bin/python). The endpoints
# are read from the banner the demo prints; the math backend's
# `POST /admin/forget` makes it forget its sessions (what the tour uses).
# Memory storage is not visible from outside the process, so instead of
# `sessions show` the storage side is checked through what the gateway
# shows: the counter continues on both nodes after the heal with exactly one
# math backend session open (so both nodes use the same new backend session),
# and /metrics counts the heal and no lost heal race.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-target/py-mcp/bin/python}
BIN=target/debug/session-gateway
BASE=$((10000 + RANDOM % 20000))  # nodes on BASE and BASE+1 (the demo falls back to free ports if busy)
DIR=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
cat > "$DIR/gateway.toml" <<TOML
listen = "127.0.0.1:$BASE"
policy = "every-access"  # "A answers 404 at once" after a DELETE on B is the every-access guarantee
[tokens]
"owner-token" = { issuer = "https://idp.test", subject = "alice" }
"other-token" = { issuer = "https://idp.test", subject = "mallory" }
TOML
$BIN --demo --config "$DIR/gateway.toml" > "$DIR/demo.out" 2> "$DIR/demo.log" & PID=$!
field() { awk -v k="$1" -v n="$2" '$1 == k { print $n; exit }' "$DIR/demo.out"; }
for _ in $(seq 1 100); do grep -q '^  ops ' "$DIR/demo.out" 2>/dev/null && break; sleep 0.1; done
B=$(awk '$1 == "node" && $2 == "B" { print $3; exit }' "$DIR/demo.out")
A=$(awk '$1 == "node" && $2 == "A" { print $3; exit }' "$DIR/demo.out")
MATH=$(field backends 3)
[ -n "$A" ] && [ -n "$B" ] && [ -n "$MATH" ] || { echo "no endpoints in the demo's banner"; cat "$DIR/demo.out" "$DIR/demo.log"; exit 1; }
MATH=${MATH%/mcp}
for u in "${A%/mcp}/readyz" "${B%/mcp}/readyz" "$MATH/admin/sessions"; do
  curl -sf "$u" >/dev/null || { echo "not up: $u"; cat "$DIR/demo.log"; exit 1; }
done
"$PY" gateway/tests/python/e2e_client.py "$A" "$B" "$MATH" owner-token other-token \
  || { echo "--- demo log"; tail -40 "$DIR/demo.log"; exit 1; }
METRICS=$(curl -sf "${A%/mcp}/metrics")
metric() { printf '%s\n' "$METRICS" | awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { print s + 0 }'; }
healed=$(metric 'gateway_backend_calls_total{backend="math",outcome="healed"}')
expired=$(metric 'gateway_backend_expired_total{backend="math"}')
lost=$(metric 'gateway_backend_heal_lost_total')
[ "$healed" -ge 1 ] && [ "$expired" -ge 1 ] && [ "$lost" = 0 ] \
  || { echo "metrics: healed=$healed expired=$expired heal_lost=$lost"; printf '%s\n' "$METRICS" | grep '^gateway_'; exit 1; }
echo "ok: /metrics: math healed $healed call(s), expired $expired backend session(s), no heal lost a race"
kill -TERM "$PID"
wait "$PID" || { echo "the demo did not exit cleanly on SIGTERM"; cat "$DIR/demo.log"; exit 1; }
PID=
echo "e2e-demo on memory: ok"
