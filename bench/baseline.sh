#!/usr/bin/env bash
# The measured baseline of issue #5 in one command: every figure docs/performance.md's
# "Baseline" section quotes, each from `loadtest` against a fresh server process, the whole
# set REPEAT times (medians reported). Loopback only; every run stops by itself.
#
#   bench/baseline.sh                      # everything once, about 5 minutes
#   REPEAT=3 bench/baseline.sh             # medians of 3
#   ONLY="chat group" bench/baseline.sh    # some parts: idle handshakes echo chat group
#   BACKENDS="epoll uring" bench/baseline.sh   # both backends, in turn within each repetition
#   bench/baseline.sh --uring-goals        # issue #11's chat figures on both backends, REPEAT=2:
#                                          # 4 in flight (maximum, then half of it), G = 1,000
#   bench/baseline.sh --table DIR          # reprint an earlier run's table from its JSON
#   BASE_BIN=/tmp/base/switchboard bench/baseline.sh --uring-goals
#                                          # and another build's binary on each backend too,
#                                          # in turn within each repetition (a change vs before)
#
# What runs (client and server share this machine's cores; read
# ../shared/design/measuring.md first):
#   idle        19,000 idle WebSocket connections on a fresh `switchboard echo`, and 19,000
#               framed-TCP connections logged in on a fresh `switchboard serve`: server RSS per
#               connection, and kernel slab per socket end (/proc/meminfo Slab delta over the
#               2 × N socket ends of client and server, both on this machine).
#   handshakes  19,000 WebSocket connections opened as fast as the server takes them
#               (connect + upgrade per second).
#   echo        64 B and 1 KiB, WebSocket and framed TCP, CONNS_ECHO connections, 1 in flight.
#   chat        1:1 over framed TCP, CONNS_CHAT connections in pairs: unpaced with 1 and with 4
#               SENDs in flight per connection (the maximum for each client shape), then paced
#               at half of each maximum measured in the same repetition (the latency goal).
#   group       G = 100 and G = 1,000 over CONNS_CHAT connections, unpaced: deliveries/s.
#
# Settings (environment): REPEAT, ONLY, BACKENDS (the server's `--backend`: epoll, uring or
# both; with both, every part runs on each in turn within a repetition, so the two share the
# machine's state), WORKERS (server reactors; 1 leaves a core to the client, and puts `serve`'s
# logic core on the reactor's thread, the default with one reactor since 2026-12-04; a
# SERVER_BIN or BASE_BIN built before then runs it on a thread of its own; to pin the mode,
# SWITCHBOARD_CONFIG=FILE with `logic-thread = "own"` or "reactor"), DURATION (s per
# traffic run), CONNS_IDLE, CONNS_ECHO, CONNS_CHAT, CHAT_INFLIGHT (SENDs in flight of the chat
# runs: "1 4"), GROUP_SIZES ("100 1000"), SYNCHRONOUS (the chat store: full or normal), ARRIVALS (the paced
# chat rows' loadtest --arrivals: poisson, the default since 2026-12-04, or even, as before), OUT
# (where the JSON goes), SERVER_BIN (the switchboard binary: another build's, to compare two
# builds run after run), BASE_BIN (a second binary run on every backend right after this
# build's, within each repetition: rows "base-epoll", "base-uring"; compare two builds side by side).
#
# Each server listens on loopback ports that were free when it started (never fixed ones:
# another benchmark may be running); one that cannot bind them, or that runs on epoll when
# io_uring was asked for, stops the script with its log.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

table_only=""
if [[ ${1:-} == --uring-goals ]]; then
    BACKENDS=${BACKENDS:-"epoll uring"}
    ONLY=${ONLY:-"chat group"}
    CHAT_INFLIGHT=${CHAT_INFLIGHT:-4}
    GROUP_SIZES=${GROUP_SIZES:-1000}
    REPEAT=${REPEAT:-2}
elif [[ ${1:-} == --table ]]; then
    table_only=${2:?usage: bench/baseline.sh --table DIR}
    # shellcheck disable=SC1091
    source "$table_only/settings.env"
    OUT=$table_only
fi

REPEAT=${REPEAT:-1}
ONLY=${ONLY:-"idle handshakes echo chat group"}
BACKENDS=${BACKENDS:-epoll}
CHAT_INFLIGHT=${CHAT_INFLIGHT:-"1 4"}
GROUP_SIZES=${GROUP_SIZES:-"100 1000"}
WORKERS=${WORKERS:-1}
DURATION=${DURATION:-10}
CONNS_IDLE=${CONNS_IDLE:-19000}
CONNS_ECHO=${CONNS_ECHO:-100}
CONNS_CHAT=${CONNS_CHAT:-1000}
SYNCHRONOUS=${SYNCHRONOUS:-full}
ARRIVALS=${ARRIVALS:-poisson}
OUT=${OUT:-$repo/target/baseline/$(date -u +%Y%m%dT%H%M%SZ)}
SECRET=baseline-secret
target_dir=${CARGO_TARGET_DIR:-$repo/target}
server_bin=${SERVER_BIN:-$target_dir/release/switchboard}
loadtest_bin=$target_dir/release/loadtest

log() { echo "baseline: $*" >&2; }

print_table() {
    python3 - "$OUT" <<'EOF'
import glob, json, os, statistics, sys
out = sys.argv[1]
settings = {k: v.strip('"') for k, v in
            (line.strip().split("=", 1) for line in open(f"{out}/settings.env") if "=" in line)}

# With two backends every file name carries the one it ran on (NAME-BACKEND-rN), and each
# figure gets a row per backend, one under the other.
backends = settings.get("VARIANTS", settings.get("BACKENDS", "epoll")).split()
suffix = ""

def runs(name):
    found = []
    for path in sorted(glob.glob(f"{out}/{name}{suffix}-r*.json")):
        with open(path) as f:
            found.append(json.load(f))
    return found

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def fmt(value, spec=",.0f"):
    return "n/a" if value is None else format(value, spec)

def cpu_us(run):
    if run.get("server_cpu_s") is not None and run.get("received"):
        return run["server_cpu_s"] * 1e6 / run["received"]
    return None

def slab_per_socket(name):
    values = []
    for path in sorted(glob.glob(f"{out}/{name}{suffix}-r*.slab")):
        before, during, sockets = (float(x) for x in open(path).read().split())
        values.append((during - before) * 1024 / sockets)
    return med(values)

def failed(rs):
    total = sum(sum(r.get("failed", {}).values()) for r in rs)
    lost = sum(r.get("lost") or 0 for r in rs)
    return f"{total} failed, {lost} lost"

reps = settings.get("REPEAT", "1")
print(f"\nbench/baseline.sh, medians of {reps}; server --workers {settings['WORKERS']}; "
      f"load average {settings.get('LOAD_START', '?')} at the start, "
      f"{open('/proc/loadavg').read().split()[0]} at the end; JSON in {out}\n")
print("| figure | run | value | p50 µs | p99 µs | server CPU µs/msg | notes |")
print("|---|---|---|---|---|---|---|")

def by_thread(rs):
    # The server's CPU per message by thread name (loadtest's server_threads_cpu_s): which
    # thread a chat message spends its time in.
    names = sorted({n for r in rs for n, v in r.get("server_threads_cpu_s", {}).items() if v > 0})
    parts = [f"{n} {fmt(med([r['server_threads_cpu_s'].get(n, 0) * 1e6 / r['received'] for r in rs if r.get('received')]), '.1f')}"
             for n in names]
    return "by thread µs/msg: " + ", ".join(parts) + "; " if parts else ""

rows = []

def acks(rs):
    # A chat row's p50/p99 are the push's (send to the recipient's receipt), which does not
    # wait for the store's commit; the sender's ack does (--commit-delay, then the fsync).
    p = lambda k: med([r["ack_latency_us"][k] for r in rs if r.get("ack_latency_us")])
    return f"ack (after the commit) p50 {fmt(p('p50'))}, p99 {fmt(p('p99'))} µs; "

def row(figure, run, value, rs, notes=""):
    lat = lambda k: med([r["latency_us"][k] for r in rs if r.get("latency_us")])
    cpu = med([cpu_us(r) for r in rs])
    if len(backends) > 1:
        variant = suffix[1:]
        run = (f"{run}, BASE_BIN --backend {variant[5:]}" if variant.startswith("base-")
               else f"{run}, --backend {variant}")
    rows.append(f"| {figure} | {run} | {value} | {fmt(lat('p50'))} | {fmt(lat('p99'))} | "
                f"{fmt(cpu, '.1f')} | {notes or failed(rs)} |")

def body():
    for name, figure, run, extra in [
            ("idle-ws", "idle RSS per connection", "WS on `switchboard echo`", ""),
            ("idle-login", "idle RSS per logged-in connection",
             "TCP logged in on `switchboard serve`", "session included; ")]:
        rs = runs(name)
        if rs:
            row(figure, f"{rs[0]['connected']:,} {run}",
                f"{fmt(med([r['rss_per_conn_bytes'] for r in rs]))} B", rs,
                f"{extra}kernel slab {fmt(slab_per_socket(name))} B per socket end; "
                f"loadtest RSS {fmt(med([r['client_rss_bytes'] / 2**20 for r in rs]), '.1f')} MiB; {failed(rs)}")
    rs = runs("handshakes")
    if rs:
        row("handshakes per second", f"{rs[0]['connected']:,} WS, connect + upgrade",
            f"{fmt(med([r['handshakes_per_sec'] for r in rs]))}/s", rs)
    for name, label in [("echo-ws-64", "WS 64 B"), ("echo-ws-1024", "WS 1 KiB"),
                        ("echo-tcp-64", "TCP 64 B"), ("echo-tcp-1024", "TCP 1 KiB")]:
        rs = runs(name)
        if rs:
            row("echo msgs/s", f"{label}, {settings['CONNS_ECHO']} conns, 1 in flight",
                f"{fmt(med([r['msgs_per_sec'] for r in rs]))}/s", rs)
    for k in settings.get("CHAT_INFLIGHT", "1 4").split():
        rs = runs(f"chat-max-k{k}")
        if rs:
            row("chat maximum", f"{settings['CONNS_CHAT']} TCP conns, unpaced, {k} in flight",
                f"{fmt(med([r['msgs_per_sec'] for r in rs]))}/s", rs, acks(rs) + by_thread(rs) + failed(rs))
        rs = runs(f"chat-half-k{k}")
        if rs:
            rates = [r.get("target_rate") for r in rs]
            row("chat at half the maximum", f"paced at half of the {k}-in-flight maximum "
                f"({fmt(med(rates))}/s asked)", f"{fmt(med([r['msgs_per_sec'] for r in rs]))}/s", rs,
                f"goal: push p99 ≤ 2,000 µs; {acks(rs)}{by_thread(rs)}{failed(rs)}")
    for g in settings.get("GROUP_SIZES", "100 1000").split():
        rs = runs(f"group-g{g}")
        if rs:
            row("group fan-out deliveries/s", f"G = {int(g):,}, {settings['CONNS_CHAT']} conns, unpaced",
                f"{fmt(med([r['msgs_per_sec'] for r in rs]))}/s", rs, by_thread(rs) + failed(rs))

by_backend = []
for backend in backends:
    suffix = f"-{backend}" if len(backends) > 1 else ""
    rows = []
    body()
    by_backend.append(rows)
for at in range(max(len(r) for r in by_backend)):
    for backend_rows in by_backend:
        if at < len(backend_rows):
            print(backend_rows[at])
EOF
}
if [[ -n $table_only ]]; then
    print_table
    exit 0
fi

# What runs in each repetition: every backend on this build, then (BASE_BIN) on the other.
variants=$BACKENDS
if [[ -n ${BASE_BIN:-} ]]; then
    [[ -x $BASE_BIN ]] || { log "BASE_BIN: $BASE_BIN is not an executable"; exit 1; }
    for backend in $BACKENDS; do variants+=" base-$backend"; done
fi
log "building switchboard and loadtest (release)"
cargo build --release --quiet -p switchboard -p switchboard-loadtest
ulimit -n 20000 || { log "cannot raise the open-file limit to 20000"; exit 1; }
mkdir -p "$OUT"
cat >"$OUT/settings.env" <<EOF
REPEAT="$REPEAT"
ONLY="$ONLY"
WORKERS="$WORKERS"
DURATION="$DURATION"
CONNS_IDLE="$CONNS_IDLE"
CONNS_ECHO="$CONNS_ECHO"
CONNS_CHAT="$CONNS_CHAT"
SYNCHRONOUS="$SYNCHRONOUS"
BACKENDS="$BACKENDS"
VARIANTS="$variants"
BASE_BIN="${BASE_BIN:-}"
CHAT_INFLIGHT="$CHAT_INFLIGHT"
GROUP_SIZES="$GROUP_SIZES"
LOAD_START="$(cut -d' ' -f1 /proc/loadavg)"
EOF
for backend in $BACKENDS; do
    [[ $backend == epoll || $backend == uring ]] || { log "BACKENDS: epoll or uring, not $backend"; exit 1; }
done

server_pid=""
data_dir=$OUT/data
stop_server() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap stop_server EXIT

# A loopback port free now (the kernel's pick, released at once for the server to bind).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server MODE BACKEND: a fresh process on free ports ($tcp and $ws say which), listening
# once its TCP port answers while it runs. `serve` runs without its per-connection request rate
# (--request-rate 0): the load generator's clients send far faster than any chat client, which
# is what these runs measure; and without the admin listener (a port of its own to collide).
start_server() {
    local mode=$1 backend=$2
    stop_server
    local tcp_port ws_port
    tcp_port=$(free_port)
    ws_port=$(free_port)
    while [[ $ws_port == "$tcp_port" ]]; do ws_port=$(free_port); done
    tcp=tcp://127.0.0.1:$tcp_port
    ws=ws://127.0.0.1:$ws_port/
    local listen=(--tcp "127.0.0.1:$tcp_port" --ws "127.0.0.1:$ws_port" --backend "$backend")
    local bin=$server_bin
    [[ -n ${base:-} ]] && bin=$BASE_BIN
    case $mode in
    echo) "$bin" echo --workers "$WORKERS" "${listen[@]}" >"$OUT/server.log" 2>&1 & ;;
    serve)
        rm -rf "$data_dir"
        SWITCHBOARD_JWT_SECRET=$SECRET "$bin" serve --workers "$WORKERS" "${listen[@]}" \
            --admin off --data "$data_dir" --synchronous "$SYNCHRONOUS" --request-rate 0 \
            >"$OUT/server.log" 2>&1 &
        ;;
    esac
    server_pid=$!
    for _ in $(seq 100); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            server_pid=""
            log "the $backend server exited at start (a port taken since it was picked?); its log:"
            cat "$OUT/server.log" >&2
            exit 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$tcp_port") 2>/dev/null; then
            if grep -q "io_uring is unavailable" "$OUT/server.log"; then
                log "io_uring was asked for, the server runs on epoll; its log:"
                cat "$OUT/server.log" >&2
                exit 1
            fi
            return 0
        fi
        sleep 0.05
    done
    log "the server did not answer on 127.0.0.1:$tcp_port; its log:"
    cat "$OUT/server.log" >&2
    exit 1
}

# load NAME SCENARIO ARGS...: one loadtest run against the running server, JSON to NAME.
load() {
    local name=$1
    shift
    "$loadtest_bin" "$@" --server-pid "$server_pid" --quiet --json "$OUT/$name.json" \
        >"$OUT/$name.txt" 2>&1 || { log "$name failed:"; cat "$OUT/$name.txt" >&2; exit 1; }
}

slab_kib() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }

# idle_run NAME SECONDS ARGS...: an idle load with a Slab reading while every connection is up.
idle_run() {
    local name=$1 seconds=$2
    shift 2
    local before during
    before=$(slab_kib)
    load "$name" "$@" --duration "${seconds}s" &
    local pid=$!
    sleep $((seconds - 3))
    during=$(slab_kib)
    wait "$pid"
    echo "$before $during $((2 * CONNS_IDLE))" >"$OUT/$name.slab"
}

msgs_per_sec() { python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['msgs_per_sec']))" "$1"; }

# Adds the rate a paced run asked for to its JSON, for the table.
note_rate() { python3 -c "
import json, sys
path, rate = sys.argv[1], int(sys.argv[2])
d = json.load(open(path)); d['target_rate'] = rate; json.dump(d, open(path, 'w'))" "$1" "$2"; }

wants() { [[ " $ONLY " == *" $1 "* ]]; }

# chat_run NAME SCENARIO ARGS...: a fresh chat server on $backend, then one SCENARIO run.
chat_run() {
    local name=$1 scenario=$2
    shift 2
    start_server serve "$backend"
    load "$name" "$scenario" --target "$tcp" --jwt-secret "$SECRET" --conns "$CONNS_CHAT" \
        --duration "${DURATION}s" "$@"
}
sources=127.0.0.1-127.0.0.20

# With one backend the files are named as before (NAME-rN.json); with two, NAME-BACKEND-rN.
for rep in $(seq "$REPEAT"); do
    for variant in $variants; do
        backend=${variant#base-}
        base=""
        [[ $variant == base-* ]] && base=1
        b=""
        [[ $variants == "$variant" ]] || b="-$variant"
        if wants idle; then
            log "r$rep $variant idle: $CONNS_IDLE WebSocket connections on a fresh echo server"
            start_server echo "$backend"
            idle_run "idle-ws$b-r$rep" 25 idle --target "$ws" --conns "$CONNS_IDLE" \
                --source-ips "$sources" --ramp 10000/s --heartbeat 10s
            log "r$rep $variant idle: $CONNS_IDLE framed-TCP connections logged in on a fresh chat server"
            start_server serve "$backend"
            idle_run "idle-login$b-r$rep" 25 idle --target "$tcp" --conns "$CONNS_IDLE" \
                --source-ips "$sources" --ramp 10000/s --heartbeat 10s --jwt-secret "$SECRET"
        fi
        if wants handshakes; then
            log "r$rep $variant handshakes: $CONNS_IDLE WebSocket connections, as fast as they go"
            start_server echo "$backend"
            load "handshakes$b-r$rep" idle --target "$ws" --conns "$CONNS_IDLE" \
                --source-ips "$sources" --ramp 1000000/s --duration 10s
        fi
        if wants echo; then
            for size in 64 1024; do
                for proto in ws tcp; do
                    log "r$rep $variant echo: $proto $size B"
                    start_server echo "$backend"
                    target=$ws
                    [[ $proto == tcp ]] && target=$tcp
                    load "echo-$proto-$size$b-r$rep" echo --target "$target" --conns "$CONNS_ECHO" \
                        --size "$size" --inflight 1 --duration "${DURATION}s"
                done
            done
        fi
        if wants chat; then
            for k in $CHAT_INFLIGHT; do
                log "r$rep $variant chat: maximum with $k in flight"
                chat_run "chat-max-k$k$b-r$rep" chat --inflight "$k"
                half=$(($(msgs_per_sec "$OUT/chat-max-k$k$b-r$rep.json") / 2))
                log "r$rep $variant chat: paced at $half/s"
                chat_run "chat-half-k$k$b-r$rep" chat --inflight "$k" --rate "$half" --arrivals "$ARRIVALS"
                note_rate "$OUT/chat-half-k$k$b-r$rep.json" "$half"
            done
        fi
        if wants group; then
            for g in $GROUP_SIZES; do
                log "r$rep $variant group: G = $g"
                chat_run "group-g$g$b-r$rep" group --group-size "$g"
            done
        fi
    done
done
stop_server
rm -rf "$data_dir"
print_table | tee "$OUT/table.md"
