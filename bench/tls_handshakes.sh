#!/usr/bin/env bash
# TLS handshakes per second: `switchboard echo` beside bench/peers' `rustls_echo` (tokio +
# tokio-rustls, the same rustls configuration), same certificate (ECDSA P-256, made for the run),
# same client (bench's tls_handshakes: THREADS client threads, a full TLS 1.3 handshake and one
# packet echo per connection), REPEAT runs interleaved, a fresh server process per run. Prints per
# server the median handshakes/s and server CPU µs per handshake, and each one's ratio to
# Switchboard's. On 2 cores the client's half of each handshake takes CPU from the server, so
# CPU µs per handshake is the figure that compares the servers. Loopback only; stops by itself.
#
#   bench/tls_handshakes.sh                       # 3 runs of 10 s each per server
#   REPEAT=5 DURATION=5 SERVER_THREADS=1 bench/tls_handshakes.sh
#   RESUME=1 bench/tls_handshakes.sh              # resumed (ticket) handshakes instead
#   SERVERS="switchboard switchboard-shared tokio-rustls" bench/tls_handshakes.sh
#
# switchboard-shared is the same binary started through systemd-socket-activate (the systemd
# package): its reactors share one passed listening socket per transport, where `switchboard`
# gives each reactor its own SO_REUSEPORT socket (docs/performance.md says why both are here).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
REPEAT=${REPEAT:-3}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
SERVER_THREADS=${SERVER_THREADS:-2}
RESUME=${RESUME:-0}
SERVERS=${SERVERS:-"switchboard tokio-rustls"}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
out=$(mktemp -d)
trap 'stop_server; rm -rf "$out"' EXIT

cargo build --release --quiet --bin switchboard
cargo build --release --quiet -p switchboard-bench --bin tls_handshakes
(cd bench/peers && cargo build --release --quiet --bin rustls_echo)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE \
    -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null

server_pid=""
stop_server() {
    [[ -n "$server_pid" ]] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

free_ports() {
    python3 -c '
import socket
held = [socket.socket() for _ in range(2)]
for s in held:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in held))'
}

run_one() {
    # A port picked free can be taken before the server binds it (rustls_echo binds without
    # SO_REUSEADDR, so a port left in TIME_WAIT by the last run's probe refuses it): new ports.
    local attempt
    for attempt in 1 2 3 4 5; do
        start_server "$@" && break
        echo "run $2 of $1: the server did not start (attempt $attempt):" >&2
        cat "$out/$1.$2.log" >&2
        server_pid=""
    done
    [[ -n "$server_pid" ]] || return 0
    local resume=()
    [[ $RESUME == 1 ]] && resume=(--resume)
    "$target_dir/release/tls_handshakes" --server "$1" --addr "127.0.0.1:$port" \
        --pid "$server_pid" --ca "$out/cert.pem" --threads "$THREADS" --duration "$DURATION" \
        "${resume[@]}" | tee -a "$out/results.jsonl"
    stop_server
}

port=""
start_server() {
    local server=$1 run=$2 ws_port
    read -r port ws_port < <(free_ports)
    case $server in
        switchboard)
            "$target_dir/release/switchboard" echo --tcp "127.0.0.1:$port" --ws "127.0.0.1:$ws_port" \
                --workers "$SERVER_THREADS" --tls-cert "$out/cert.pem" --tls-key "$out/key.pem" \
                >/dev/null 2>"$out/$server.$run.log" &
            ;;
        switchboard-shared)
            systemd-socket-activate -l "127.0.0.1:$port" -l "127.0.0.1:$ws_port" --fdname=tcp:ws \
                "$target_dir/release/switchboard" echo --workers "$SERVER_THREADS" \
                --tls-cert "$out/cert.pem" --tls-key "$out/key.pem" \
                >/dev/null 2>"$out/$server.$run.log" &
            ;;
        tokio-rustls)
            PEER_TLS_CERT="$out/cert.pem" PEER_TLS_KEY="$out/key.pem" \
                bench/peers/target/release/rustls_echo --addr "127.0.0.1:$port" \
                --threads "$SERVER_THREADS" >/dev/null 2>"$out/$server.$run.log" &
            ;;
    esac
    server_pid=$!
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || return 1
        python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' \
            "$port" 2>/dev/null && break
        sleep 0.1
    done
    kill -0 "$server_pid" 2>/dev/null
}

echo "machine: $(nproc) cpus, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$REPEAT"); do
    for server in $SERVERS; do
        run_one "$server" "$run"
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "threads: client $THREADS, server $SERVER_THREADS; $DURATION s per run"
python3 - "$out/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
by = {}
for row in rows:
    by.setdefault(row["server"], []).append(row)
base = None
print(f"{'server':<18} {'handshakes/s':>13} {'ratio':>7} {'server CPU us/hs':>17} {'ratio':>7} {'failed':>7}  runs: handshakes/s (CPU us/hs)")
for server in by:
    runs = by.get(server, [])
    if not runs:
        continue
    rate = statistics.median(r["per_s"] for r in runs)
    cpu = statistics.median(r["server_cpu_us_per_handshake"] for r in runs)
    failed = sum(r["failed"] for r in runs)
    if base is None:
        base = (rate, cpu)
    each = ", ".join(f"{r['per_s']:.0f} ({r['server_cpu_us_per_handshake']:.0f})" for r in runs)
    print(f"{server:<18} {rate:>13.0f} {rate / base[0]:>7.2f} {cpu:>17.0f} {cpu / base[1]:>7.2f} {failed:>7}  {each}")
PY
