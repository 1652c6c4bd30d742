#!/usr/bin/env bash
# The Redis backend beside the embedded one, same data, same run: durable
# ingest, Redis memory per event, and Rank warm and cold.
#
#   load/redis.sh             # about 5 minutes
#   DURATION=5 load/redis.sh  # shorter Rank runs
#
# 1. Ingest through the service (StreamEvents, `loadgen ingest`): INGEST
#    events with ids over 20,000 creators and 100,000 viewers in time order,
#    as a feed produces them (a 1,000-event batch holds ~1,000 distinct
#    viewers), 4 streams x 1,000-event batches, into a fresh embedded store
#    and a fresh redis-server. Redis memory (INFO used_memory) before, after,
#    and after a second pass of the same number of new events over the same
#    creators and viewers: the second pass is what one more event costs once
#    its viewer and creator exist (the dedupe window), the first pass
#    includes the records of new viewers and creators.
# 2. Rank with a warm cache and with a cold one (a cache of one entry and a
#    1 ms TTL: every creator bucket, the viewer and the platform aggregate
#    come from the store on every call), at saturation (4 connections x 16
#    streams) and paced at half that maximum for latency percentiles, on
#    EVENTS events imported with `import`.
# The service runs on core 0; redis-server and the load generators share
# core 1, for both backends (redis-server idles during the embedded runs).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
EVENTS=${EVENTS:-300000}
INGEST=${INGEST:-200000}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
command -v h2load >/dev/null || { echo "h2load missing: apt-get install -y nghttp2-client" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install -y redis-server" >&2; exit 1; }

# shellcheck source=load/lib.sh
. load/lib.sh

redis_port=$(free_port)
taskset -c "$CLIENT_CORE" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$work" > "$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$redis_port"
store="redis://127.0.0.1:$redis_port"

used_memory() { redis-cli -p "$redis_port" info memory | grep -E '^used_memory:' | cut -d: -f2 | tr -d '\r'; }
# Waits for keys with a short expiry to go (a settled event's markers live
# 2 x (2 x redis.write_timeout_ms + 5 s) = 18 s by default), then visits
# every key (SCAN deletes those past their expiry) so used_memory counts
# what stays for the dedupe window.
settled_memory() {
  sleep "${SETTLE_SECS:-20}"
  redis-cli -p "$redis_port" --scan > /dev/null
  used_memory
}
ingest_embedded() { # label args...
  local label=$1; shift
  local port
  port=$(free_port)
  serve "$label" "$port" "$bin" serve --listen "127.0.0.1:$port" "$@"
  "$loadgen" ingest "http://127.0.0.1:$port" "$INGEST" 4 1000 20000 100000 | sed "s/^/$label /" >&2
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
}
echo "== ingest: $INGEST events, 20,000 creators, 100,000 viewers, StreamEvents 4 x 1,000" >&2
ingest_embedded embedded --data-dir "$work/ingest-data"
before=$(used_memory)
port=$(free_port)
serve redis "$port" "$bin" serve --listen "127.0.0.1:$port" --store "$store"
"$loadgen" ingest "http://127.0.0.1:$port" "$INGEST" 4 1000 20000 100000 | sed "s/^/redis /" >&2
first=$(settled_memory)
"$loadgen" ingest "http://127.0.0.1:$port" "$INGEST" 4 1000 20000 100000 | sed "s/^/redis second pass /" >&2
second=$(settled_memory)
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
python3 - "$before" "$first" "$second" "$INGEST" "$(redis-cli -p "$redis_port" dbsize)" <<'PY' >&2
import sys
before, first, second, n, keys = map(int, sys.argv[1:])
print(f"redis memory: {before} -> {first} -> {second} bytes, {keys} keys")
print(f"  first pass (new viewers, creators, events): {(first - before) / n:.0f} bytes/event")
print(f"  second pass (same viewers and creators, new events): {(second - first) / n:.0f} bytes/event")
PY
redis-cli -p "$redis_port" flushall > /dev/null

echo "== data: $EVENTS synthetic events (10,000 creators, 200,000 viewers)" >&2
"$bin" generate --seed 42 --creators 10000 --viewers 200000 --events "$EVENTS" --end now > "$work/events.jsonl"
echo "-- import into the embedded store" >&2
"$bin" import "$work/events.jsonl" --data-dir "$work/data" >&2
echo "-- import into Redis" >&2
"$bin" import "$work/events.jsonl" --store "$store" >&2
echo "redis: $(redis-cli -p "$redis_port" dbsize) keys, $(redis-cli -p "$redis_port" info memory | grep -E '^used_memory_human' | tr -d '\r')" >&2
"$loadgen" frame "$work/rank.bin"
printf '[cache]\ncreators = 1\nviewers_mb = 1\nttl_ms = 1\n' > "$work/cold.toml"

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
