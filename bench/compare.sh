#!/usr/bin/env bash
# Switchboard side by side with the peers its users would pick instead (issue 5, item 3):
# `switchboard echo` and the echo servers of bench/peers/ (tokio-tungstenite, fastwebsockets),
# each under the same WebSocket echo load from the same client with the same settings, a fresh
# server process per run, REPEAT runs interleaved server by server. Prints per server the median
# msgs/s, p99, server CPU µs per message (utime+stime from /proc/PID/stat over the measured
# window, divided by the messages echoed in it) and idle RSS per connection (IDLE_CONNS idle
# WebSocket connections on a fresh server, bench's idle_memory), and each figure's ratio to
# Switchboard's. Loopback only; every run stops by itself. Read ../shared/design/measuring.md
# before reading the figures: on 2 cores the client is often
# the bottleneck, so msgs/s mostly measures the client and CPU µs/msg compares the servers.
#
#   bench/compare.sh                                  # defaults below, ~3 minutes
#   REPEAT=5 INFLIGHT="1 16" SIZE=1024 bench/compare.sh
#   SERVERS="switchboard fastwebsockets" IDLE_CONNS=0 bench/compare.sh   # echo only
#   bench/compare.sh --table target/compare/20261126T111700Z          # an earlier run's table
#   BASE_BIN=/tmp/base/switchboard SERVERS="switchboard-base switchboard" bench/compare.sh
#   SERVERS="switchboard switchboard-uring" bench/compare.sh   # the epoll and io_uring backends
#   BASE_BIN=/tmp/base/switchboard SERVERS="switchboard switchboard-base-uring switchboard-uring" \
#       bench/compare.sh      # an io_uring change against the build before it, beside epoll
#   SERVERS="switchboard-uring-none switchboard-uring-incremental switchboard-uring" \
#       bench/compare.sh      # io_uring with only the receive levers named (`+` between
#                             # them: none, incremental, bundle, shrink, all; plain -uring:
#                             # the default, incremental+shrink)
#                             # a change against the build before it (BASE_BIN: that build's binary)
#
# Settings (environment): SERVERS, THREADS (server worker threads, all servers), CONNS, SIZE
# (bytes), INFLIGHT (one or more windows), DURATION (s), REPEAT, IDLE_CONNS (0 skips idle),
# CLIENT (auto: `loadtest echo` when it builds, else bench/peers' echo_load stand-in; or
# loadtest / echo_load), OUT (where the JSON of every run goes).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# `bench/compare.sh --table DIR` prints the table of an earlier run again (from its JSON files).
table_only=""
if [[ ${1:-} == --table ]]; then
    table_only=${2:?usage: bench/compare.sh --table DIR}
    # shellcheck disable=SC1091
    source "$table_only/settings.env"
    OUT=$table_only
    export TABLE_ONLY=1
fi

SERVERS=${SERVERS:-"switchboard tokio-tungstenite fastwebsockets"}
THREADS=${THREADS:-2}
CONNS=${CONNS:-100}
SIZE=${SIZE:-20}
INFLIGHT=${INFLIGHT:-"1 16"}
DURATION=${DURATION:-10}
REPEAT=${REPEAT:-3}
IDLE_CONNS=${IDLE_CONNS:-5000}
CLIENT=${CLIENT:-auto}
OUT=${OUT:-$repo/target/compare/$(date -u +%Y%m%dT%H%M%SZ)}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
peers_dir=$repo/bench/peers/target/release

log() { echo "compare: $*" >&2; }

print_table() {
    python3 - "$OUT" "$SERVERS" "$INFLIGHT" "$REPEAT" "$CONNS" "$SIZE" "$DURATION" "$THREADS" "$IDLE_CONNS" "$CLIENT" <<'EOF'
import json, re, statistics, sys, os
out, servers, inflights, repeat, conns, size, duration, threads, idle, client = sys.argv[1:]
servers, inflights = servers.split(), inflights.split()

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def cpu_us_per_msg(run):
    # loadtest rounds its per-message figure to 0.1 µs; its CPU seconds over the window's
    # messages keep the digits that matter at 16 in flight.
    if run.get("server_cpu_s") is not None and run.get("received"):
        return run["server_cpu_s"] * 1e6 / run["received"]
    return run.get("server_cpu_s_per_million_msgs")

def user_us_per_msg(run):
    # The user-space part (utime); what is left of the CPU per message is the kernel's.
    if run.get("server_user_cpu_s") is not None and run.get("received"):
        return run["server_user_cpu_s"] * 1e6 / run["received"]
    return None

def echo(server, k):
    runs = []
    for rep in range(1, int(repeat) + 1):
        with open(f"{out}/echo-{server}-k{k}-r{rep}.json") as f:
            runs.append(json.load(f))
    return {
        "msgs": median([r["msgs_per_sec"] for r in runs]),
        "p99": median([r["latency_us"]["p99"] for r in runs]),
        "p50": median([r["latency_us"]["p50"] for r in runs]),
        "cpu": median([cpu_us_per_msg(r) for r in runs]),
        "user": median([user_us_per_msg(r) for r in runs]),
        "lost": sum(r.get("lost") or 0 for r in runs),
    }

def idle_bytes(server):
    path = f"{out}/idle-{server}.txt"
    if not os.path.exists(path):
        return None
    return median([float(v) for v in re.findall(r'"ws_rss_b_per_conn":([0-9.]+)', open(path).read())])

def fmt(value, spec):
    return "n/a" if value is None else format(value, spec)

def ratio(value, base):
    return "n/a" if value is None or not base else f"{value / base:.2f}"

load = "n/a (table reprinted)" if os.environ.get("TABLE_ONLY") else open("/proc/loadavg").read().split()[0]
print(f"\nmedian of {repeat} runs, fresh server per run; {conns} WebSocket connections, {size} B binary "
      f"messages, {duration} s per run after 1 s warm-up, server threads {threads}, client {client}; "
      f"idle: {idle} connections; load average at the end {load}")
print("ratios are server / switchboard (msgs/s: higher is better; p99, CPU and memory: lower is better)\n")
head = f"| server | in flight | msgs/s | p50 µs | p99 µs | server CPU µs/msg | of which user space | idle B/conn | ratio msgs/s | ratio p99 | ratio CPU | ratio idle |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
base_idle = idle_bytes("switchboard")
for k in inflights:
    base = echo("switchboard", k) if "switchboard" in servers else None
    for server in servers:
        e, i = echo(server, k), idle_bytes(server)
        b = base or {"msgs": None, "p99": None, "cpu": None}
        print(f"| {server} | {k} | {fmt(e['msgs'], ',.0f')} | {fmt(e['p50'], ',.0f')} | {fmt(e['p99'], ',.0f')} | {fmt(e['cpu'], '.2f')} "
              f"| {fmt(e['user'], '.3f')} | {fmt(i, ',.0f')} | {ratio(e['msgs'], b['msgs'])} | {ratio(e['p99'], b['p99'])} "
              f"| {ratio(e['cpu'], b['cpu'])} | {ratio(i, base_idle)} |")
print(f"\nevery run's JSON: {out}")
EOF
}
if [[ -n $table_only ]]; then
    print_table
    exit 0
fi

# ---- build -----------------------------------------------------------------------------------
log "building switchboard, idle_memory and the peers (release)"
cargo build --release --quiet --bin switchboard
cargo build --release --quiet -p switchboard-bench --bin idle_memory
if [[ " $SERVERS " == *" tokio-tungstenite "* || " $SERVERS " == *" fastwebsockets "* ]]; then
    (cd bench/peers && cargo build --release --quiet)
fi
if [[ $CLIENT == auto || $CLIENT == loadtest ]]; then
    if cargo build --release --quiet -p switchboard-loadtest --bin loadtest 2>/dev/null; then
        CLIENT=loadtest
    elif [[ $CLIENT == loadtest ]]; then
        log "ERROR: loadtest does not build"
        exit 1
    else
        CLIENT=echo_load
    fi
fi
log "client: $CLIENT"
mkdir -p "$OUT"
for name in SERVERS THREADS CONNS SIZE INFLIGHT DURATION REPEAT IDLE_CONNS CLIENT; do
    printf '%s=%q\n' "$name" "${!name}"
done >"$OUT/settings.env"

# ---- servers ---------------------------------------------------------------------------------
# The receive levers a `switchboard-uring-LEVERS` server names (`+` between them).
levers() { local name=${1#switchboard-uring-}; echo "${name//+/,}"; }

# The command line of server $1 on port $2, and the line it prints once it accepts.
server_cmd() {
    case $1 in
        switchboard) echo "$target_dir/release/switchboard echo --ws 127.0.0.1:$2 --workers $THREADS" ;;
        switchboard-uring) echo "$target_dir/release/switchboard echo --ws 127.0.0.1:$2 --workers $THREADS --backend uring" ;;
        switchboard-base) echo "${BASE_BIN:?switchboard-base needs BASE_BIN} echo --ws 127.0.0.1:$2 --workers $THREADS" ;;
        switchboard-base-uring) echo "${BASE_BIN:?switchboard-base-uring needs BASE_BIN} echo --ws 127.0.0.1:$2 --workers $THREADS --backend uring" ;;
        switchboard-uring-*) echo "$target_dir/release/switchboard echo --ws 127.0.0.1:$2 --workers $THREADS --backend uring --uring-recv $(levers "$1")" ;;
        tokio-tungstenite) echo "$peers_dir/tungstenite_echo --addr 127.0.0.1:$2 --threads $THREADS" ;;
        fastwebsockets) echo "$peers_dir/fastwebsockets_echo --addr 127.0.0.1:$2 --threads $THREADS" ;;
        *) log "unknown server $1"; exit 2 ;;
    esac
}
ready_line() {
    case $1 in
        switchboard | switchboard-base | switchboard-uring | switchboard-base-uring | switchboard-uring-*) echo "switchboard echo: WebSocket on" ;;
        *) echo "listening on" ;;
    esac
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

server_pid=""
stop_server() {
    [[ -n $server_pid ]] || return 0
    local pid=$server_pid waited=0
    server_pid=""
    kill -TERM "$pid" 2>/dev/null || true
    # Switchboard drains for up to 10 s; the peers exit at once.
    while kill -0 "$pid" 2>/dev/null && [[ $waited -lt 150 ]]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts server $1 on a free port; sets server_pid and port once it printed its ready line.
start_server() {
    port=$(free_port)
    local logfile="$OUT/server-$1-$port.log" waited=0
    # Emptied here, not by the child's redirection: that happens asynchronously, and the loop
    # below must never read an earlier run's ready line.
    : >"$logfile"
    # exec: the PID measured is the server's, not a shell's.
    bash -c "exec $(server_cmd "$1" "$port")" >"$logfile" 2>&1 </dev/null &
    server_pid=$!
    until grep -q "^$(ready_line "$1")" "$logfile" 2>/dev/null; do
        if ! kill -0 "$server_pid" 2>/dev/null || [[ $waited -ge 100 ]]; then
            log "ERROR: $1 did not start; its output:"
            cat "$logfile" >&2
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

run_client() { # server, inflight, json file
    case $CLIENT in
        loadtest)
            "$target_dir/release/loadtest" echo --target "ws://127.0.0.1:$port/" --conns "$CONNS" \
                --size "$SIZE" --inflight "$2" --duration "${DURATION}s" --server-pid "$server_pid" \
                --source-ips 127.0.0.1-127.0.0.20 --json "$3" >"$3.log" 2>&1
            ;;
        echo_load)
            "$peers_dir/echo_load" --target "ws://127.0.0.1:$port/" --conns "$CONNS" --size "$SIZE" \
                --inflight "$2" --duration "$DURATION" --server-pid "$server_pid" \
                --source-ips 127.0.0.1-127.0.0.20 --json "$3" >"$3.log" 2>&1
            ;;
    esac
}

# ---- echo ------------------------------------------------------------------------------------
for inflight in $INFLIGHT; do
    for rep in $(seq 1 "$REPEAT"); do
        for server in $SERVERS; do
            json="$OUT/echo-$server-k$inflight-r$rep.json"
            # A run in which not every client connected (ports held by someone else's TIME_WAIT
            # on this shared machine, say) is run again on a fresh server, twice at most.
            for attempt in 1 2 3; do
                start_server "$server"
                if ! run_client "$server" "$inflight" "$json"; then
                    log "ERROR: the client failed against $server; its output:"
                    cat "$json.log" >&2
                    exit 1
                fi
                stop_server
                if python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["connected"] != int(sys.argv[2]))' \
                    "$json" "$CONNS"; then
                    break
                fi
                log "$server run $rep: not every client connected (attempt $attempt): $(tail -n 3 "$json.log" | tr '\n' ' ')"
                if [[ $attempt == 3 ]]; then
                    exit 1
                fi
                sleep 5
            done
            log "echo $server inflight $inflight run $rep: $(head -c 300 "$json")"
        done
    done
done

# ---- idle memory -----------------------------------------------------------------------------
if [[ $IDLE_CONNS -gt 0 ]]; then
    for server in $SERVERS; do
        result="$OUT/idle-$server.txt"
        case $server in
            switchboard | switchboard-base | switchboard-uring | switchboard-base-uring | switchboard-uring-*)
                bin="$target_dir/release/switchboard"
                [[ $server == switchboard-base* ]] && bin=$BASE_BIN
                backend=epoll
                [[ $server == *-uring || $server == *-uring-* ]] && backend=uring
                recv=incremental,shrink
                [[ $server == switchboard-uring-* ]] && recv=$(levers "$server")
                SWITCHBOARD_BACKEND=$backend SWITCHBOARD_URING_RECV=$recv "$target_dir/release/idle_memory" --server-bin "$bin" \
                    --workers "$THREADS" --ws "$IDLE_CONNS" --tcp 0 --repeat "$REPEAT" >"$result" ;;
            *)
                "$target_dir/release/idle_memory" --server-cmd "$(server_cmd "$server" '{ws_port}')" \
                    --ws "$IDLE_CONNS" --tcp 0 --repeat "$REPEAT" >"$result" ;;
        esac
        log "idle $server: $(grep -o '"ws_rss_b_per_conn":[0-9.]*' "$result" | cut -d: -f2 | tr '\n' ' ')B/conn"
    done
fi

# ---- the table -------------------------------------------------------------------------------
print_table
