#!/usr/bin/env bash
# End-to-end against `session-gateway --demo` as its own process on the
# memory store, driven by the TypeScript MCP SDK (@modelcontextprotocol/sdk,
# pinned below, installed into target/ts-mcp; quick when present): the
# scenario in gateway/tests/ts/e2e_client.cjs.
#
#   gateway/tests/e2e-ts.sh
#
# Needs target/debug/session-gateway (cargo build -p session-gateway), node
# and npm.
set -euo pipefail
cd "$(dirname "$0")/../.."
TS_MCP_VERSION=1.32.2
export TS_MCP="$PWD/target/ts-mcp"
if [ "$(node -p "require('$TS_MCP/node_modules/@modelcontextprotocol/sdk/package.json').version" 2>/dev/null)" != "$TS_MCP_VERSION" ]; then
  mkdir -p "$TS_MCP"
  npm install --prefix "$TS_MCP" --no-audit --no-fund --silent "@modelcontextprotocol/sdk@$TS_MCP_VERSION"
fi
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
node gateway/tests/ts/e2e_client.cjs "$A" "$B" "$MATH" owner-token other-token \
  || { echo "--- demo log"; tail -40 "$DIR/demo.log"; exit 1; }
kill -TERM "$PID"
wait "$PID" || { echo "the demo did not exit cleanly on SIGTERM"; cat "$DIR/demo.log"; exit 1; }
PID=
echo "e2e-ts on memory: ok"
