# Shared by load/run.sh and load/redis.sh (sourced): builds the release
# binaries, makes a scratch directory and stops every server started with
# `serve` on exit; ports, servers pinned to a core, saturation and
# paced-latency runs with h2load. Expects $DURATION, $WARMUP, $SERVER_CORE
# and $CLIENT_CORE (and optionally $BIN); sets $bin, $loadgen, $work and $pids.

cargo build --release --locked --bin creator-boost --examples >&2
# BIN=PATH benchmarks another build of the server (an earlier release, say)
# with this tree's load generator and echo baseline.
target=${CARGO_TARGET_DIR:-target}
bin=${BIN:-$target/release/creator-boost}
loadgen=$target/release/examples/loadgen
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

serve() { # name port args...
  local port=$2; shift 2
  taskset -c "$SERVER_CORE" "$@" > "$work/server-$port.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
}
grpc_headers=(-H 'content-type: application/grpc' -H 'te: trailers')
saturate() { # label port path frame
  local out
  out=$(taskset -c "$CLIENT_CORE" h2load -c 4 -m 16 -D "$DURATION" --warm-up-time "$WARMUP" \
        --data "$4" "${grpc_headers[@]}" "http://127.0.0.1:$2$3" 2>&1)
  local rps ok
  rps=$(grep -oE 'finished in [0-9.]+[a-z]+, [0-9.]+ req/s' <<<"$out" | grep -oE '[0-9.]+ req/s' | cut -d' ' -f1)
  ok=$(grep -oE 'status codes: [0-9]+ 2xx' <<<"$out" | grep -oE '[0-9]+ 2xx')
  printf '%-34s %12s req/s  (%s)\n' "$1" "$rps" "$ok" >&2
  echo "$rps"
}
paced() { # label port path frame rps_total
  local clients=4
  local per=$(( ($5 + clients - 1) / clients ))
  rm -f "$work/lat.log"
  taskset -c "$CLIENT_CORE" h2load -c "$clients" -m 1 --rps "$per" -D "$DURATION" --warm-up-time "$WARMUP" \
      --log-file "$work/lat.log" --data "$4" "${grpc_headers[@]}" "http://127.0.0.1:$2$3" > "$work/paced.out" 2>&1
  python3 - "$1" "$work/lat.log" "$(( per * clients ))" <<'PY'
import sys
label, path, rate = sys.argv[1], sys.argv[2], sys.argv[3]
lat = sorted(int(line.split()[2]) for line in open(path) if line.strip())
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000.0
bad = sum(1 for line in open(path) if line.strip() and line.split()[1] != "200")
print(f"{label:<34} paced {rate} req/s: n={len(lat)} p50 {q(.5):.3f} ms  p99 {q(.99):.3f} ms  p999 {q(.999):.3f} ms  non-200 {bad}", file=sys.stderr)
PY
}

