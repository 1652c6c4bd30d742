#!/usr/bin/env bash
# Kafka ingest throughput beside StreamEvents ingest, same run, same events:
# a topic of 4 partitions on a local broker (tansu) is consumed by one
# server into the embedded store, then into Redis; StreamEvents ingest of the
# same events into a fresh embedded store for comparison.
#
#   load/kafka.sh               # 200,000 events
#   EVENTS=50000 load/kafka.sh  # shorter
#   KAFKA_ARGS="--kafka-max-batch 1000" load/kafka.sh   # other consumer settings
#
# Kafka events/s = events applied after the first one / time from the first
# applied event to the last (joining the group is left out); the broker and
# the server share the machine's 2 cores. The broker's own ceiling is shown
# first: a consumer that only counts (load/bin/kafka_drain.rs) on the
# server's core. BIN=PATH runs another build.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-200000}
DURATION=${DURATION:-10}; WARMUP=${WARMUP:-2}; SERVER_CORE=${SERVER_CORE:-0}; CLIENT_CORE=${CLIENT_CORE:-1}
tansu=${TANSU:-../shared/tools/tansu/tansu}
[ -x "$tansu" ] || tansu=$(command -v tansu) || { echo "no tansu broker (../shared/tools/tansu or PATH)" >&2; exit 1; }
tansu=$(realpath "$tansu")
command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install -y redis-server" >&2; exit 1; }

# shellcheck source=load/lib.sh
. load/lib.sh
cargo build --release --locked --example kafka_produce --example kafka_drain >&2
produce=$target/release/examples/kafka_produce
drain=$target/release/examples/kafka_drain

kafka_port=$(free_port)
mkdir -p "$work/tansu"
(cd "$work/tansu" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine sqlite://tansu.db) > "$work/tansu.log" 2>&1 &
pids+=($!)
wait_port "$kafka_port"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" > "$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$redis_port"

echo "== data: $EVENTS synthetic events to a 4-partition topic" >&2
"$bin" generate --seed 42 --creators 10000 --viewers 200000 --events "$EVENTS" --end now > "$work/events.jsonl"
"$produce" "127.0.0.1:$kafka_port" events 4 "$work/events.jsonl"

consume() { # label args...
  local label=$1; shift
  local port metrics_port first accepted
  port=$(free_port); metrics_port=$(free_port)
  serve "$label" "$port" "$bin" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics_port" \
    --kafka-brokers "127.0.0.1:$kafka_port" --kafka-topic events --kafka-group "$label" ${KAFKA_ARGS:-} "$@"
  # Timed from the first applied event to the last: joining the group
  # (seconds, the broker's doing) is left out.
  accepted=0; first=
  while [ "${accepted%.*}" -lt "$EVENTS" ]; do
    sleep 0.05
    accepted=$(curl -s "http://127.0.0.1:$metrics_port/metrics" \
      | awk '/^creator_boost_ingest_(accepted|duplicates)_total/ {s += $2} END {print s + 0}')
    if [ -z "$first" ] && [ "${accepted%.*}" -gt 0 ]; then first=$(date +%s.%N); first_count=${accepted%.*}; fi
  done
  python3 -c "import sys,time; s=time.time()-float(sys.argv[2]); n=int(sys.argv[3])-int(sys.argv[4]); print(f'{sys.argv[1]:<34} {n/s:12.0f} events/s  ({n} events in {s:.2f} s after the first applied)')" \
    "$label" "$first" "$EVENTS" "$first_count" >&2
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
}

echo "== the broker's delivery ceiling: a consumer that only counts" >&2
taskset -c "$SERVER_CORE" "$drain" "127.0.0.1:$kafka_port" events "$EVENTS" >&2

echo "== Kafka ingest (one replica, all 4 partitions)" >&2
consume "kafka -> embedded" --data-dir "$work/kafka-embedded"
consume "kafka -> redis" --data-dir "$work/unused" --store "redis://127.0.0.1:$redis_port"

echo "== StreamEvents ingest, same run (4 streams x 1000-event batches)" >&2
ingest_port=$(free_port)
serve ingest "$ingest_port" "$bin" serve --listen "127.0.0.1:$ingest_port" --data-dir "$work/stream-embedded"
taskset -c "$CLIENT_CORE" "$loadgen" ingest "http://127.0.0.1:$ingest_port" "$EVENTS" 4 1000 >&2
