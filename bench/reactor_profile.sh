#!/usr/bin/env bash
# Where one reactor thread's time goes under load: `perf record` on `reactor-0` of a fresh
# `switchboard serve --workers 1` while `loadtest` runs a scenario against it (by default the
# group fan-out at G = 1,000 of issue #11), then perf's flat profile of that thread (self time
# by symbol, user and kernel). Loopback only; stops by itself. Needs `perf` (linux-perf).
#
#   bench/reactor_profile.sh                          # io_uring, G = 1,000
#   BACKEND=epoll bench/reactor_profile.sh
#   SERVER_BIN=/tmp/base/switchboard bench/reactor_profile.sh   # another build's binary
#   SCENARIO=echo CONNS=100 bench/reactor_profile.sh  # `switchboard echo`, 20 B WebSocket
#                                                     # echoes, 16 in flight (bench/compare.sh's)
#
# With one reactor, `serve`'s logic core runs on `reactor-0` by default (`--logic-thread auto`,
# since 2026-12-04), so a `group` profile holds the core's fan-out work too;
# SERVER_ARGS=--logic-thread=own profiles the reactor alone, as the recordings before then did.
#
# Settings (environment): BACKEND (uring or epoll), SCENARIO (group or echo), SERVER_BIN,
# SERVER_ARGS (more arguments for `serve`, split on spaces),
# GROUP_SIZE (1000), INFLIGHT (echo: 16), SIZE (echo: 20), CONNS (1000),
# DURATION (s of load, 10), SKIP (s of load before recording, 3), RECORD (s recorded, 4),
# PERCENT (the smallest share printed, 0.5), CALL_GRAPH (perf record's, "-g"; "--call-graph dwarf" to
# see callers in `perf report -G -i OUT/perf.data`), OUT (where perf.data, the load's JSON and the
# report go).
#
# Shares of one recording are a pointer to where time goes, not a figure to compare across
# sittings: the CPU per delivery comes from bench/baseline.sh.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

BACKEND=${BACKEND:-uring}
SCENARIO=${SCENARIO:-group}
INFLIGHT=${INFLIGHT:-16}
SIZE=${SIZE:-20}
GROUP_SIZE=${GROUP_SIZE:-1000}
CONNS=${CONNS:-1000}
DURATION=${DURATION:-10}
SKIP=${SKIP:-3}
RECORD=${RECORD:-4}
PERCENT=${PERCENT:-0.5}
SERVER_ARGS=${SERVER_ARGS:-}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
server_bin=${SERVER_BIN:-$target_dir/release/switchboard}
loadtest_bin=$target_dir/release/loadtest
OUT=${OUT:-$repo/target/profile/$(date -u +%Y%m%dT%H%M%SZ)-$SCENARIO-$BACKEND}
SECRET=profile-secret

log() { echo "reactor_profile: $*" >&2; }
command -v perf >/dev/null || { log "perf is not installed"; exit 1; }
(( SKIP + RECORD < DURATION )) || { log "SKIP + RECORD must end before DURATION"; exit 1; }
if [[ -z ${SERVER_BIN:-} ]]; then
    cargo build --release --quiet -p switchboard -p switchboard-loadtest
fi
ulimit -n 20000
mkdir -p "$OUT"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
tcp_port=$(free_port)
ws_port=$(free_port)
while [[ $ws_port == "$tcp_port" ]]; do ws_port=$(free_port); done

server_pid=""
load_pid=""
stop() {
    [[ -n $load_pid ]] && kill "$load_pid" 2>/dev/null || true
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$OUT/data"
}
trap stop EXIT

listen=(--workers 1 --backend "$BACKEND" --tcp "127.0.0.1:$tcp_port" --ws "127.0.0.1:$ws_port")
case $SCENARIO in
group)
    # shellcheck disable=SC2086 # SERVER_ARGS is split into arguments on purpose
    SWITCHBOARD_JWT_SECRET=$SECRET "$server_bin" serve "${listen[@]}" --admin off \
        --data "$OUT/data" --request-rate 0 $SERVER_ARGS >"$OUT/server.log" 2>&1 &
    load=(group --target "tcp://127.0.0.1:$tcp_port" --jwt-secret "$SECRET" --group-size "$GROUP_SIZE")
    ;;
echo)
    "$server_bin" echo "${listen[@]}" >"$OUT/server.log" 2>&1 &
    load=(echo --target "ws://127.0.0.1:$ws_port/" --size "$SIZE" --inflight "$INFLIGHT")
    ;;
*) log "SCENARIO: group or echo, not $SCENARIO"; exit 1 ;;
esac
server_pid=$!
for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || { log "the server exited; its log:"; cat "$OUT/server.log" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$tcp_port") 2>/dev/null && break
    sleep 0.05
done
if [[ $BACKEND == uring ]] && grep -q "io_uring is unavailable" "$OUT/server.log"; then
    log "io_uring was asked for, the server runs on epoll"
    exit 1
fi

"$loadtest_bin" "${load[@]}" --conns "$CONNS" --duration "${DURATION}s" \
    --server-pid "$server_pid" --quiet --json "$OUT/load.json" >"$OUT/load.txt" 2>&1 &
load_pid=$!
sleep "$SKIP"
tid=""
for task in /proc/"$server_pid"/task/*; do
    [[ $(cat "$task/comm") == reactor-0 ]] && tid=${task##*/}
done
[[ -n $tid ]] || { log "no thread reactor-0 in $server_pid"; exit 1; }
read -ra call_graph <<<"${CALL_GRAPH:--g}"
perf record --quiet "${call_graph[@]}" -t "$tid" -o "$OUT/perf.data" -- sleep "$RECORD" 2>"$OUT/perf.log"
wait "$load_pid" || { log "loadtest failed:"; cat "$OUT/load.txt" >&2; exit 1; }
load_pid=""

python3 - "$OUT/load.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
threads = d.get("server_threads_cpu_s") or {}
n = d.get("received") or 1
user = d.get("server_user_cpu_s") or 0
print(f"messages {n:,} ({d['msgs_per_sec']:,.0f}/s); server CPU {d['server_cpu_s'] * 1e6 / n:.2f} µs per "
      f"message (user {user * 1e6 / n:.2f}), reactor-0 {threads.get('reactor-0', 0) * 1e6 / n:.2f}")
EOF
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
perf report -i "$OUT/perf.data" --no-children -g none --sort symbol --stdio --percent-limit "$PERCENT" \
    2>/dev/null | grep -E '^ +[0-9]' | sed -E 's/[ -]+$//' | tee "$OUT/report.txt"
