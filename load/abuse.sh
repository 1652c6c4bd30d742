#!/usr/bin/env bash
# Hostile and careless clients against the real release binary, with the
# server's RSS read from /proc. Bounded time (about 2 minutes); no network
# beyond loopback. Prints one line per finding.
#
#   load/abuse.sh                      # build and try target/release/creator-boost
#   load/abuse.sh path/to/creator-boost  # try another build (e.g. an older commit)
#
# The client (load/bin/abuse.rs) speaks plain HTTP/2 and gRPC, so it works
# against any version of the server.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --example abuse >&2
if [[ $# -ge 1 ]]; then
  bin=$(realpath "$1")
else
  cargo build --release --locked --bin creator-boost >&2
  bin=target/release/creator-boost
fi
abuse=target/release/examples/abuse
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
rss_mb() { awk '/VmRSS/ {printf "%d", $2/1024}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# Highest RSS of PID while the command runs. Past $RSS_LIMIT_MB (4 GB) the
# client is stopped, so a server without limits cannot exhaust the machine.
RSS_LIMIT_MB=${RSS_LIMIT_MB:-4000}
peak_rss_during() { # pid command...
  local pid=$1; shift
  "$@" > "$work/client.out" 2>&1 &
  local client=$! peak=0 now
  while kill -0 "$client" 2>/dev/null; do
    now=$(rss_mb "$pid"); (( now > peak )) && peak=$now
    if (( now > RSS_LIMIT_MB )); then
      kill "$client" 2>/dev/null; echo "(stopped at the ${RSS_LIMIT_MB} MB safety limit)" >> "$work/client.out"
    fi
    sleep 0.2
  done
  wait "$client" || true
  echo "$peak"
}
# Scenarios to run (default all): SCENARIOS="3 4" load/abuse.sh
SCENARIOS=${SCENARIOS:-1 2 3 4 5 6 7}
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
start() { # port args... ; sets $server
  "$bin" serve --listen "127.0.0.1:$1" --data-dir "$work/data-$1" "${@:2}" > "$work/server-$1.log" 2>&1 &
  server=$!
  pids+=("$server")
  wait_port "$1"
  sleep 0.5
}
stop() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }

echo "binary: $bin"

if want 1; then
# 1. 64 connections each declare a 16 MiB RecordEvents message, send 15 MiB
#    and stall.
port=$(free_port); start "$port" --max-in-flight 10
idle=$(rss_mb "$server")
peak=$(peak_rss_during "$server" "$abuse" stalled-uploads "127.0.0.1:$port" 64 15360 16384 8)
echo "1. 64 stalled 15/16 MiB uploads, --max-in-flight 10: RSS idle ${idle} MB, peak ${peak} MB (+$((peak - idle))); $(cat "$work/client.out")"
stop
fi
if want 2; then
# 2. The same, under the write limit, and with a write token the clients lack.
echo secret > "$work/token"
port=$(free_port); start "$port" --write-token-file "$work/token"
idle=$(rss_mb "$server")
peak=$(peak_rss_during "$server" "$abuse" stalled-uploads "127.0.0.1:$port" 64 15360 16384 8)
echo "2. the same without the token, token required: RSS idle ${idle} MB, peak ${peak} MB (+$((peak - idle))); $(cat "$work/client.out")"
idle=$(rss_mb "$server")
peak=$(peak_rss_during "$server" "$abuse" stalled-uploads "127.0.0.1:$port" 64 1500 1600 8 secret)
echo "2b. 64 uploads declaring 1600 KiB (under the per-RPC limit), 1500 KiB sent, WITH the token: RSS before ${idle} MB, peak ${peak} MB (+$((peak - idle))); $(cat "$work/client.out")"
stop
fi
if want 3; then
# 3. One connection sends Rank requests of 2,000 candidates with explain and
#    never reads an answer.
port=$(free_port); start "$port"
idle=$(rss_mb "$server")
peak=$(peak_rss_during "$server" "$abuse" non-reader "127.0.0.1:$port" 2000 15)
echo "3. non-reading client, 15 s: RSS idle ${idle} MB, peak ${peak} MB (+$((peak - idle))); $(cat "$work/client.out")"
stop
fi
if want 4; then
# 4. 50 StreamEvents that never send, with --max-in-flight 50.
port=$(free_port); start "$port" --max-in-flight 50
"$abuse" idle-streams "127.0.0.1:$port" 50 > "$work/client.out" 2>&1 || true
echo "4. 50 idle streams, --max-in-flight 50: $(cat "$work/client.out")"
stop
fi
if want 5; then
# 5. A public listen address with open writes.
port=$(free_port)
set +e
timeout 3 "$bin" serve --listen "0.0.0.0:$port" --data-dir "$work/data-public" > "$work/public.log" 2>&1
code=$?
set -e
echo "5. --listen 0.0.0.0 without token: exit code $code (124 = still serving after 3 s): $(tr '\n' ' ' < "$work/public.log" | cut -c1-300)"
fi
if want 6; then
# 6. Descriptors exhausted: the server runs with at most 64 open files and
#    300 clients connect and hold; CPU over 5 s, then Health once they leave.
port=$(free_port)
prlimit --nofile=64:64 "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data-fd" > "$work/server-fd.log" 2>&1 &
server=$!; pids+=("$server"); wait_port "$port"; sleep 0.5
"$abuse" connections "127.0.0.1:$port" 300 6 > "$work/client.out" 2>&1 &
client=$!
sleep 1
before=$(cpu_ticks "$server"); sleep 4; after=$(cpu_ticks "$server")
hz=$(getconf CLK_TCK)
cpu=$(( (after - before) * 100 / hz / 4 ))
wait "$client" || true
sleep 1.5
set +e
timeout 5 "$bin" health --server "http://127.0.0.1:$port" --timeout-ms 3000 > "$work/health.out" 2>&1
health=$?
set -e
logged=$(grep -ci "accept" "$work/server-fd.log" || true)
echo "6. nofile 64, 300 held connections: server CPU ${cpu}% of a core; health after they left: exit ${health} ($(tr '\n' ' ' < "$work/health.out")); log lines about accept: ${logged}; $(cat "$work/client.out")"
grep -i "accept" "$work/server-fd.log" | head -2 || true
stop
fi
if want 7; then
# 7. Raw TCP sockets that never send a preface: are they closed?
port=$(free_port); start "$port"
"$abuse" connections "127.0.0.1:$port" 200 14 > "$work/client.out" 2>&1 &
client=$!
sleep 2; early=$(ls "/proc/$server/fd" | wc -l)
sleep 11; late=$(ls "/proc/$server/fd" | wc -l)
wait "$client" || true
echo "7. 200 silent sockets: server descriptors after 2 s ${early}, after 13 s ${late}"
stop
fi
