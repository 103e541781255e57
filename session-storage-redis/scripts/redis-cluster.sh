#!/usr/bin/env bash
# Starts or stops a throwaway 3-master Redis Cluster on loopback for tests.
#
#   scripts/redis-cluster.sh start [BASE_PORT|auto]   # masters on BASE..BASE+2
#   scripts/redis-cluster.sh stop  BASE_PORT
#
# `start` prints the seed URLs (comma-separated) on stdout, suitable for
# SESSION_TEST_REDIS_CLUSTER_URLS. With `auto` (the default) it picks a
# base port at random in 20000-49999 whose three ports and cluster bus
# ports (+10000) are all free, so concurrent runs do not collide. It never
# stops or reuses anything already listening: a busy port is an error
# (explicit base) or another pick (auto).
#
# Each started node's pid and Redis run_id are recorded under
# /tmp/session-redis-cluster-BASE/. `stop` shuts down only a node whose
# live run_id and pid still match what this script recorded, so it never
# stops a cluster it did not start (someone else's, or a later run that
# reused the ports). Data lives under /tmp and is not persisted.
set -euo pipefail

cmd=${1:-}
base=${2:-auto}
usage() {
  echo "usage: $0 start [BASE_PORT|auto] | stop BASE_PORT" >&2
  exit 2
}
[[ "$cmd" == start || "$cmd" == stop ]] || usage
[[ "$base" == auto || "$base" =~ ^[0-9]+$ ]] || usage
[[ "$cmd" == stop && "$base" == auto ]] && usage

state_dir() { echo "/tmp/session-redis-cluster-$1"; }

# True if something accepts connections on 127.0.0.1:$1.
listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

ports_free() {
  local b=$1 p
  (( b >= 1024 && b + 2 + 10000 <= 65535 )) || return 1
  for p in "$b" "$((b + 1))" "$((b + 2))"; do
    if listening "$p" || listening "$((p + 10000))"; then
      return 1
    fi
  done
}

# The Redis run_id and process id of the server on port $1 (empty if none).
server_id() {
  { redis-cli -h 127.0.0.1 -p "$1" info server 2>/dev/null || true; } |
    tr -d '\r' | awk -F: '$1 == "run_id" { r = $2 } $1 == "process_id" { p = $2 } END { if (r != "") print r, p }'
}

stop() {
  local b=$1 root p recorded live
  root=$(state_dir "$b")
  if [[ ! -d "$root" ]]; then
    echo "no cluster started by this script on base port $b: nothing stopped" >&2
    return 0
  fi
  local ours=()
  for p in "$b" "$((b + 1))" "$((b + 2))"; do
    recorded=$(cat "$root/$p/id" 2>/dev/null || true)
    live=$(server_id "$p")
    if [[ -n "$recorded" && "$live" == "$recorded" ]]; then
      redis-cli -h 127.0.0.1 -p "$p" shutdown nosave >/dev/null 2>&1 || true
      ours+=("$p")
    elif [[ -n "$live" ]]; then
      echo "port $p: a Redis this script did not start (run_id/pid $live, recorded '${recorded:-none}'): left running" >&2
    fi
  done
  for _ in $(seq 1 50); do
    local alive=0
    for p in "${ours[@]}"; do
      [[ "$(server_id "$p")" == "$(cat "$root/$p/id")" ]] && alive=1
    done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
  done
  rm -rf "$root"
}

start() {
  local b=$1 root p
  if [[ "$b" == auto ]]; then
    b=""
    for _ in $(seq 1 50); do
      local c=$((20000 + (RANDOM % 10000) * 3))
      # mkdir is atomic: it also reserves the base against a concurrent start.
      if ports_free "$c" && mkdir "$(state_dir "$c")" 2>/dev/null; then
        b=$c
        break
      fi
    done
    [[ -n "$b" ]] || { echo "no free port range found for a Redis Cluster" >&2; exit 1; }
  else
    if ! ports_free "$b"; then
      echo "ports $b-$((b + 2)) (or their bus ports $((b + 10000))-$((b + 10002))) are in use: refusing to start (and not stopping what is there)" >&2
      exit 1
    fi
    if ! mkdir "$(state_dir "$b")" 2>/dev/null; then
      # Left over by a run that died: only its own nodes would be stopped.
      stop "$b"
      mkdir "$(state_dir "$b")"
    fi
  fi
  root=$(state_dir "$b")
  local ports=("$b" "$((b + 1))" "$((b + 2))")
  trap 'stop "$b"' ERR
  for p in "${ports[@]}"; do
    mkdir -p "$root/$p"
    redis-server --port "$p" --bind 127.0.0.1 --daemonize yes \
      --cluster-enabled yes --cluster-config-file "$root/$p/nodes.conf" \
      --cluster-node-timeout 5000 --dir "$root/$p" \
      --save "" --appendonly no \
      --logfile "$root/$p/redis.log" --pidfile "$root/$p/redis.pid"
  done
  for p in "${ports[@]}"; do
    local id=""
    for _ in $(seq 1 100); do
      if [[ -s "$root/$p/redis.pid" ]]; then
        id=$(server_id "$p")
        # The server answering must be the one we started (pid check).
        [[ -n "$id" && "${id#* }" == "$(cat "$root/$p/redis.pid")" ]] && break
      fi
      id=""
      sleep 0.1
    done
    if [[ -z "$id" ]]; then
      echo "node $p did not start (see $root/$p/redis.log)" >&2
      false
    fi
    echo "$id" >"$root/$p/id"
  done
  # redis-cli waits forever for the nodes to agree if one of them dies:
  # bound it.
  timeout 60 redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$root/create.log" 2>&1 || {
    cat "$root/create.log" >&2
    false
  }
  for p in "${ports[@]}"; do
    local ok=0
    for _ in $(seq 1 200); do
      if redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then
        ok=1
        break
      fi
      sleep 0.1
    done
    if [[ $ok -ne 1 ]]; then
      echo "node $p did not reach cluster_state:ok" >&2
      false
    fi
  done
  trap - ERR
  local urls=()
  for p in "${ports[@]}"; do urls+=("redis://127.0.0.1:$p"); done
  (IFS=,; echo "${urls[*]}")
}

case "$cmd" in
  start) start "$base" ;;
  stop) stop "$base" ;;
esac
