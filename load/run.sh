#!/usr/bin/env bash
# Load benchmark of the running service, beside its baselines, in one run.
#
#   load/run.sh            # full run (about 3 minutes)
#   DURATION=5 load/run.sh # shorter
#   INGEST=0 load/run.sh   # Rank only (no ingest section)
#   ROUNDS=3 load/run.sh   # echo and warm Rank alternated 3 times, medians
#
# Servers run on core 0, the load generator (h2load, from Debian's
# nghttp2-client) on core 1. Measured in one run:
#   1. baselines: grpc.health.v1.Health/Check on the real server, and an echo
#      server built from the same proto whose Rank only decodes and answers
#      a same-size response (load/bin/echo_server.rs);
#   2. Rank, 200 candidates over 100 distinct creators, warm cache;
#   3. Rank with a cold cache (one entry, 1 ms TTL: a thread still reuses
#      what it read for up to 1 ms, so under load most calls are served
#      from memory; counted under callgrind, where every call
#      outlasts 1 ms, gives the truly cold cost), and durable ingest
#      through StreamEvents.
# Saturation: 4 connections x 16 streams. Latency: paced at half the measured
# Rank maximum, one stream per connection, percentiles from h2load's per-request
# log. Every Rank answer shape is checked with a real gRPC client first.
# Closing lines: the ratios the Rank targets are stated in (warm / echo
# throughput, paced p99 warm / echo, cold / warm throughput).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
EVENTS=${EVENTS:-1000000}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
INGEST=${INGEST:-1}
ROUNDS=${ROUNDS:-1}
command -v h2load >/dev/null || { echo "h2load missing: apt-get install -y nghttp2-client" >&2; exit 1; }

# shellcheck source=load/lib.sh
. load/lib.sh

echo "== data: $EVENTS synthetic events (10,000 creators, 200,000 viewers)" >&2
"$bin" generate --seed 42 --creators 10000 --viewers 200000 --events "$EVENTS" --end now > "$work/events.jsonl"
"$bin" import "$work/events.jsonl" --data-dir "$work/data" >&2
"$loadgen" frame "$work/rank.bin"
"$loadgen" health-frame "$work/health.bin"
printf '[cache]\ncreators = 1\nviewers_mb = 1\nttl_ms = 1\n' > "$work/cold.toml"

main_port=$(free_port); echo_port=$(free_port)
serve main "$main_port" "$bin" serve --listen "127.0.0.1:$main_port" --data-dir "$work/data"
serve echo "$echo_port" "$target/release/examples/echo_server" "127.0.0.1:$echo_port"
"$loadgen" check "http://127.0.0.1:$main_port" "$work/rank.bin" 1000 >&2

echo "== saturation (server on core $SERVER_CORE, h2load on core $CLIENT_CORE, 4 connections x 16 streams, ${DURATION}s)" >&2
health=$(saturate "Health/Check (real server)" "$main_port" /grpc.health.v1.Health/Check "$work/health.bin")
# On a shared machine the load of others comes and goes: with ROUNDS > 1
# the echo and warm Rank alternate that many times and the medians count.
echo_all=(); rank_all=()
for _ in $(seq "$ROUNDS"); do
  echo_all+=("$(saturate "Rank echo baseline" "$echo_port" /creatorboost.v1.CreatorBoost/Rank "$work/rank.bin")")
  rank_all+=("$(saturate "Rank warm (200 cand / 100 creators)" "$main_port" /creatorboost.v1.CreatorBoost/Rank "$work/rank.bin")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo_rps=$(median "${echo_all[@]}"); rank=$(median "${rank_all[@]}")
python3 -c "import sys; r,e,h=map(float,sys.argv[1:]); print(f'Rank/echo = {r/e:.2f}   Rank/health = {r/h:.2f}', file=sys.stderr)" "$rank" "$echo_rps" "$health"

# paced, and prints its p99 (ms) on stdout.
paced_p99() {
  local line
  line=$(paced "$@" 2>&1)
  echo "$line" >&2
  grep -oE 'p99 [0-9.]+' <<<"$line" | cut -d' ' -f2
}
echo "== latency under a paced load at half of each maximum" >&2
echo_p99=$(paced_p99 "Rank echo baseline" "$echo_port" /creatorboost.v1.CreatorBoost/Rank "$work/rank.bin" "$(python3 -c "print(int($echo_rps/2))")")
rank_p99=$(paced_p99 "Rank warm" "$main_port" /creatorboost.v1.CreatorBoost/Rank "$work/rank.bin" "$(python3 -c "print(int($rank/2))")")

echo "== cold cache: same data, cache of 1 entry with a 1 ms TTL (reads reused for at most 1 ms)" >&2
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
cold_port=$(free_port)
serve cold "$cold_port" "$bin" serve --listen "127.0.0.1:$cold_port" --data-dir "$work/data" --config "$work/cold.toml"
cold=$(saturate "Rank cold cache" "$cold_port" /creatorboost.v1.CreatorBoost/Rank "$work/rank.bin")
paced "Rank cold cache" "$cold_port" /creatorboost.v1.CreatorBoost/Rank "$work/rank.bin" "$(python3 -c "print(int($cold/2))")"
python3 -c "import sys; r,e,rp,ep,c=map(float,sys.argv[1:]); print(f'== ratios: warm/echo {r/e:.2f} (target >= 0.8)   paced p99 warm/echo {rp/ep:.2f} (target <= 1.3)   cold/warm {c/r:.2f} (target >= 0.5)', file=sys.stderr)" \
  "$rank" "$echo_rps" "$rank_p99" "$echo_p99" "$cold"
[ "$INGEST" = 0 ] && exit 0

echo "== durable ingest through StreamEvents (a fresh store per shape)" >&2
# Batches wait for their durable ack before the stream sends the next, so the
# group-commit size is streams x batch; three shapes of pipeline.
for shape in "4 1000" "16 1000" "4 5000"; do
  set -- $shape
  ingest_port=$(free_port)
  serve ingest "$ingest_port" "$bin" serve --listen "127.0.0.1:$ingest_port" --data-dir "$work/ingest-$1-$2"
  taskset -c "$CLIENT_CORE" "$loadgen" ingest "http://127.0.0.1:$ingest_port" 500000 "$1" "$2" >&2
done
