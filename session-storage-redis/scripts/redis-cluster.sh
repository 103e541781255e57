#!/usr/bin/env bash
# Starts or stops a throwaway 3-master Redis Cluster on loopback for tests.
#
#   scripts/redis-cluster.sh start BASE_PORT   # masters on BASE_PORT..BASE_PORT+2
#   scripts/redis-cluster.sh stop  BASE_PORT
#
# `start` prints the seed URLs (comma-separated) on stdout, suitable for
# SESSION_TEST_REDIS_CLUSTER_URLS. Data lives under /tmp and is not persisted.
set -euo pipefail

cmd=${1:-}
base=${2:-}
if [[ -z "$cmd" || -z "$base" || ! "$base" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 start|stop BASE_PORT" >&2
  exit 2
fi
ports=("$base" "$((base + 1))" "$((base + 2))")
root="/tmp/session-redis-cluster-$base"

stop() {
  for p in "${ports[@]}"; do
    redis-cli -h 127.0.0.1 -p "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  # wait for the ports to close
  for _ in $(seq 1 50); do
    alive=0
    for p in "${ports[@]}"; do
      redis-cli -h 127.0.0.1 -p "$p" ping >/dev/null 2>&1 && alive=1
    done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
  done
  rm -rf "$root"
}

start() {
  stop
  mkdir -p "$root"
  for p in "${ports[@]}"; do
    mkdir -p "$root/$p"
    redis-server --port "$p" --bind 127.0.0.1 --daemonize yes \
      --cluster-enabled yes --cluster-config-file "$root/$p/nodes.conf" \
      --cluster-node-timeout 5000 --dir "$root/$p" \
      --save "" --appendonly no \
      --logfile "$root/$p/redis.log" --pidfile "$root/$p/redis.pid"
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 1 100); do
      redis-cli -h 127.0.0.1 -p "$p" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  # redis-cli waits forever for the nodes to agree if one of them dies
  # (e.g. another run stopping the same ports): bound it.
  timeout 60 redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$root/create.log" 2>&1 || {
    cat "$root/create.log" >&2
    exit 1
  }
  for p in "${ports[@]}"; do
    ok=0
    for _ in $(seq 1 200); do
      if redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then
        ok=1
        break
      fi
      sleep 0.1
    done
    if [[ $ok -ne 1 ]]; then
      echo "node $p did not reach cluster_state:ok" >&2
      exit 1
    fi
  done
  urls=()
  for p in "${ports[@]}"; do urls+=("redis://127.0.0.1:$p"); done
  (IFS=,; echo "${urls[*]}")
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop BASE_PORT" >&2; exit 2 ;;
esac
