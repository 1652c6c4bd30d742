#!/usr/bin/env bash
# Instructions per Rank call and per ingested event, counted by valgrind's
# callgrind: exact and repeatable, so two builds compare on a noisy machine.
#
#   load/callgrind.sh                     # this tree's release build
#   BIN=/path/to/creator-boost load/callgrind.sh   # another build
#
# The server (one worker thread) runs under callgrind twice per measure, with
# N and 2N calls (or events); the figure is the difference over N, so start-up
# and shutdown cancel out. Rank: 200 candidates over 100 creators, warm cache
# and cold (the cache of load/run.sh: one entry, 1 ms TTL, so every call
# reads its creators and viewer from the store: under valgrind a call takes
# longer than the TTL), on a store of 100,000 synthetic events. Ingest: StreamEvents, one stream of
# 1,000-event batches. Needs valgrind (Debian `valgrind`).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install -y valgrind" >&2; exit 1; }
DURATION=0 WARMUP=0 SERVER_CORE=0 CLIENT_CORE=0
# shellcheck source=load/lib.sh
. load/lib.sh

"$bin" generate --seed 42 --creators 2000 --viewers 20000 --events 100000 --end 2026-01-01T00:00:00Z > "$work/events.jsonl"
"$bin" import "$work/events.jsonl" --data-dir "$work/data" >/dev/null 2>&1
"$loadgen" frame "$work/rank.bin"
printf '[cache]\ncreators = 1\nviewers_mb = 1\nttl_ms = 1\n' > "$work/cold.toml"

instructions() { # rank|cold|ingest N -> total instructions of one server run serving that load
  local mode=$1 n=$2 port name="$1-$2" config=()
  [ "$mode" = cold ] && config=(--config "$work/cold.toml")
  port=$(free_port)
  rm -rf "$work/data-$name"; cp -r "$work/data" "$work/data-$name"
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.cg" \
    "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data-$name" --worker-threads 1 ${config[@]+"${config[@]}"} \
    > "$work/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  case $mode in
    rank|cold) "$loadgen" check "http://127.0.0.1:$port" "$work/rank.bin" "$n" >/dev/null 2>&1 ;;
    ingest) "$loadgen" ingest "http://127.0.0.1:$port" "$n" 1 1000 >/dev/null 2>&1 ;;
  esac
  kill -TERM "$pid"; wait "$pid" || true
  awk '/^(summary|totals):/ {print $2; exit}' "$work/$name.cg"
}

a=$(instructions rank 200); b=$(instructions rank 400)
echo "Rank: $(( (b - a) / 200 )) instructions per call, warm cache ($bin)"
a=$(instructions cold 200); b=$(instructions cold 400)
echo "Rank: $(( (b - a) / 200 )) instructions per call, cold cache ($bin)"
a=$(instructions ingest 20000); b=$(instructions ingest 40000)
echo "ingest: $(( (b - a) / 20000 )) instructions per event ($bin)"
