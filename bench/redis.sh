#!/usr/bin/env bash
# Rank on the Redis backend beside the embedded one, same data, same run.
#
#   bench/redis.sh             # about 3 minutes
#   DURATION=5 bench/redis.sh  # shorter
#
# The same synthetic events are imported into an embedded store and into a
# local redis-server (through `import --store`, timed). Then, for each
# backend: Rank with a warm cache and with a cold one (a cache of one entry
# and a 1 ms TTL: every creator bucket, the viewer and the platform
# aggregate come from the store on every call), at saturation (4 connections
# x 16 streams) and paced at half that maximum for latency percentiles.
# The service runs on core 0; redis-server and h2load share core 1, for
# both backends (redis-server idles during the embedded runs).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
EVENTS=${EVENTS:-300000}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
command -v h2load >/dev/null || { echo "h2load missing: apt-get install -y nghttp2-client" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install -y redis-server" >&2; exit 1; }

# shellcheck source=bench/lib.sh
. bench/lib.sh

redis_port=$(free_port)
taskset -c "$CLIENT_CORE" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$work" > "$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$redis_port"
store="redis://127.0.0.1:$redis_port"

echo "== data: $EVENTS synthetic events (10,000 creators, 200,000 viewers)" >&2
"$bin" generate --seed 42 --creators 10000 --viewers 200000 --events "$EVENTS" --end now > "$work/events.jsonl"
echo "-- import into the embedded store" >&2
"$bin" import "$work/events.jsonl" --data-dir "$work/data" >&2
echo "-- import into Redis" >&2
"$bin" import "$work/events.jsonl" --store "$store" >&2
echo "redis: $(redis-cli -p "$redis_port" dbsize) keys, $(redis-cli -p "$redis_port" info memory | grep -E '^used_memory_human' | tr -d '\r')" >&2
"$loadgen" frame "$work/rank.bin"
printf '[cache]\ncreators = 1\nviewers = 1\nttl_ms = 1\n' > "$work/cold.toml"

# One server: check its answers, saturate, pace; then report the answers it
# flagged degraded (a store too slow for its read timeout would make fast,
# neutral answers look like throughput) and how many reads went to the store.
measure() { # label args...
  local label=$1; shift
  local port metrics_port rps
  port=$(free_port); metrics_port=$(free_port)
  serve "$label" "$port" "$bin" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics_port" "$@"
  "$loadgen" check "http://127.0.0.1:$port" "$work/rank.bin" 200 >&2
  rps=$(saturate "$label" "$port" /creatorboost.v1.CreatorBoost/Rank "$work/rank.bin")
  paced "$label" "$port" /creatorboost.v1.CreatorBoost/Rank "$work/rank.bin" "$(python3 -c "print(int($rps/2))")"
  curl -s "http://127.0.0.1:$metrics_port/metrics" \
    | grep -E '^creator_boost_(degraded_answers_total|store_read_duration_seconds_count|store_errors_total)' \
    | sed "s/^/    $label: /" >&2
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
}
run_backend() { # label args...
  local label=$1; shift
  measure "$label: Rank warm" "$@"
  measure "$label: Rank cold" --config "$work/cold.toml" "$@"
}

echo "== Rank, 200 candidates / 100 creators (service on core $SERVER_CORE; redis-server and h2load on core $CLIENT_CORE; ${DURATION}s)" >&2
run_backend embedded --data-dir "$work/data"
run_backend redis --store "$store"
