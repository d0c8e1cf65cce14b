#!/usr/bin/env bash
# Runs the same load under each sysctl profile and writes the comparison table into
# docs/tuning.md (between its "experiment" markers; the prose around them is kept). For each
# run and each profile, interleaved (small, million, small, million, ...) so that drift in a
# shared machine's load hits both alike: apply the profile, start a fresh `switchboard echo`,
# load it, stop it, revert. Measures kernel memory per socket end (/proc/net/sockstat TCP mem
# pages × page size, and /proc/meminfo Slab, deltas over the connections' sockets), the
# server's user-space RSS per connection, connection setups per second and, with loadtest,
# the p99 latency. Needs root (sysctl -w); the profile is always reverted, also on failure.
#
#   sudo tuning/experiment.sh                       # small vs million, 3 runs, 9,000 WS + 9,000 TCP
#   PROFILES="small million" REPEAT=5 TOOL=idle_memory tuning/experiment.sh
#   TOOL=loadtest CONNS=18000 DURATION=20s tuning/experiment.sh
#
# TOOL: idle_memory (bench/src/bin/idle_memory.rs: WS + TCP connections set up 256 at a time,
# one echo each, then idle), loadtest (`loadtest idle`, latency too), or auto (loadtest when
# target/release/loadtest exists and has the idle scenario). OUT=- prints the table instead;
# BLOCK names the block of OUT it rewrites (default: the tool), so several setups can coexist.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

PROFILES=${PROFILES:-small million}
REPEAT=${REPEAT:-3}
TOOL=${TOOL:-auto}
WORKERS=${WORKERS:-2}
WS=${WS:-9000}             # idle_memory: WebSocket connections
TCP=${TCP:-9000}           # idle_memory: framed-TCP connections
CONNS=${CONNS:-18000}      # loadtest: WebSocket connections (one loadtest process)
RAMP=${RAMP:-1000000}      # loadtest: connections opened per second at most (default: a burst)
DURATION=${DURATION:-15s}  # loadtest: the whole run, ramp included
HEARTBEAT=${HEARTBEAT:-1s} # loadtest: heartbeat interval per connection (p99 of their echoes)
SOURCE_IPS=${SOURCE_IPS:-} # loadtest: --source-ips (unset: every connection from 127.0.0.1)
PROCESSES=${PROCESSES:-1}  # loadtest: --processes (each holds CONNS / PROCESSES connections)
BACKLOG=${BACKLOG:-65535}  # loadtest: the server's --backlog; net.core.somaxconn caps it
OUT=${OUT:-docs/tuning.md}
BLOCK=${BLOCK:-}           # the name of the block in OUT to rewrite [default: the tool's name]

# shellcheck source=tuning/sysctl-state.sh
. tuning/sysctl-state.sh
require_root "$@"
[[ ! -e $STATE_FILE ]] || die "$STATE_FILE holds an unreverted save: run tuning/revert.sh first"
for profile in $PROFILES; do
    [[ -f tuning/profiles/$profile.conf ]] || die "no profile tuning/profiles/$profile.conf"
done

if [[ $TOOL == auto ]]; then
    TOOL=idle_memory
    if [[ -f loadtest/src/main.rs ]] && cargo build --release --quiet -p switchboard-loadtest \
        && target/release/loadtest idle --help >/dev/null 2>&1; then
        TOOL=loadtest
    fi
fi
cargo build --release --quiet --bin switchboard
case $TOOL in
idle_memory) cargo build --release --quiet -p switchboard-bench --bin idle_memory ;;
loadtest) cargo build --release --quiet -p switchboard-loadtest ;;
*) die "TOOL must be auto, idle_memory or loadtest, not $TOOL" ;;
esac

BLOCK=${BLOCK:-$TOOL}
raw=$(mktemp -d /tmp/switchboard-tuning.XXXXXX)
results=$raw/results.jsonl
echo "tool: $TOOL; profiles: $PROFILES; $REPEAT run(s) each; raw output in $raw"

applied=0
server_pid=
sampler_pid=
client_pid=
cleanup() {
    if [[ -n $client_pid ]]; then
        # loadtest first (the child of /usr/bin/time, which does not pass signals on).
        pkill -TERM -P "$client_pid" 2>/dev/null || true
        kill "$client_pid" 2>/dev/null || true
    fi
    if [[ -n $sampler_pid ]]; then kill "$sampler_pid" 2>/dev/null || true; fi
    if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
    if [[ $applied -eq 1 ]]; then
        bash tuning/revert.sh >>"$raw/revert.log" 2>&1 || echo "revert failed: see $raw/revert.log" >&2
    fi
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

page_size=$(getconf PAGESIZE)

# "seconds inuse mem_pages slab_kib": one system-wide reading of the kernel's TCP side.
kernel_reading() {
    local now inuse mem slab
    now=$(date +%s.%N)
    read -r inuse mem < <(awk '/^TCP:/ { for (i = 2; i < NF; i += 2) v[$i] = $(i + 1); print v["inuse"], v["mem"] }' /proc/net/sockstat)
    slab=$(awk '/^Slab:/ { print $2 }' /proc/meminfo)
    echo "$now $inuse $mem $slab"
}

# "listen_overflows syncookies_sent": system-wide TcpExt counters that say whether a burst of
# connections overflowed an accept queue (SYNs dropped, clients retry after 1 s) or the SYN
# queue (answered with cookies): what somaxconn and tcp_max_syn_backlog decide.
queue_counters() {
    awk '/^TcpExt:/ { if (!h) { for (i = 2; i <= NF; i++) n[i] = $i; h = 1 }
                      else { for (i = 2; i <= NF; i++) v[n[i]] = $i } }
         END { print v["ListenOverflows"] + 0, v["SyncookiesSent"] + 0 }' /proc/net/netstat
}

server_rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status"
}

# idle_memory starts its own fresh server, holds WS + TCP connections, prints one JSON line.
measure_idle_memory() {
    local profile=$1 run=$2 log=$raw/$1-$2.log
    target/release/idle_memory --server-bin target/release/switchboard --workers "$WORKERS" \
        --ws "$WS" --tcp "$TCP" >"$log" 2>&1 || { cat "$log" >&2; return 1; }
    grep '^{"bench":"idle_memory"' "$log" | tail -n 1 |
        jq -c --arg profile "$profile" --argjson run "$run" --argjson page "$page_size" '{
            profile: $profile, run: $run, tool: "idle_memory", conns: (.ws + .tcp),
            rss_b_per_conn: .all_rss_b_per_conn,
            kernel_tcp_mem_b_per_socket: (.kernel_tcp_mem_b_per_socket * $page / 4096),
            kernel_slab_b_per_socket: .kernel_slab_b_per_socket,
            ws_setups_per_s: (if .ws > 0 then .ws / .ws_setup_s else null end),
            tcp_setups_per_s: (if .tcp > 0 then .tcp / .tcp_setup_s else null end),
            p99_us: null, failed: 0 }' >>"$results"
}

# A fresh `switchboard echo` loaded by `loadtest idle` (heartbeats every HEARTBEAT: their round
# trips give the p99). The kernel and the server's RSS are sampled 10 times a second; setups/s
# is the connections over the time from starting loadtest to the first sample holding 99 % of
# their sockets (the whole burst, retries included; 0.1 s resolution).
measure_loadtest() {
    local profile=$1 run=$2 prefix=$raw/$1-$2
    local port baseline started connected sources=()
    [[ -n $SOURCE_IPS ]] && sources=(--source-ips "$SOURCE_IPS")
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    target/release/switchboard echo --ws "127.0.0.1:$port" --workers "$WORKERS" \
        --backlog "$BACKLOG" >"$prefix.server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        grep -q '^switchboard echo: WebSocket on' "$prefix.server.log" && break
        sleep 0.1
    done
    grep -q '^switchboard echo: WebSocket on' "$prefix.server.log" ||
        die "the server did not start: $prefix.server.log"
    sleep 1
    baseline="$(kernel_reading) $(server_rss_kib)"
    (while :; do echo "$(kernel_reading) $(server_rss_kib)"; sleep 0.1; done) >"$prefix.samples" &
    sampler_pid=$!
    started=$(date +%s.%N)
    /usr/bin/time -f '%U %S' -o "$prefix.client-cpu" target/release/loadtest idle \
        --target "ws://127.0.0.1:$port/" --conns "$CONNS" --ramp "$RAMP/s" \
        --duration "$DURATION" --heartbeat "$HEARTBEAT" --processes "$PROCESSES" \
        --server-pid "$server_pid" \
        "${sources[@]}" --json "$prefix.json" >"$prefix.loadtest.log" 2>&1 &
    # In the background and waited for, so that a signal reverts at once, not after the run.
    client_pid=$!
    wait "$client_pid" || { tail -n 20 "$prefix.loadtest.log" >&2; return 1; }
    client_pid=
    kill "$sampler_pid"
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    # Columns: seconds, TCP inuse, TCP mem pages, Slab KiB, server RSS KiB. The counts are
    # system-wide and other processes open sockets too, so the divisor is loadtest's own count
    # (two socket ends per connection), and the reading is taken 1 s after the first sample that
    # holds them all (when the handshakes' transient buffers are gone), not at the global peak.
    connected=$(jq -r '.connected' "$prefix.json")
    awk -v base="$baseline" -v started="$started" -v page="$page_size" -v conns="$connected" '
        BEGIN { split(base, b, " "); sockets = 2 * (conns > 0 ? conns : 1) }
        { t[NR] = $1; inuse[NR] = $2; mem[NR] = $3; slab[NR] = $4; rss[NR] = $5 }
        END {
            for (i = 1; i <= NR; i++) if (inuse[i] - b[2] >= 0.99 * sockets) { full = i; break }
            if (!full) { print "null null null null null"; exit }
            for (at = full; at < NR && t[at] < t[full] + 1; at++) {}
            printf "%d %.1f %.1f %.1f %.0f\n", sockets,
                (mem[at] - b[3]) * page / sockets, (slab[at] - b[4]) * 1024 / sockets,
                (rss[at] - b[5]) * 1024 / conns, conns / (t[full] - started)
        }' "$prefix.samples" >"$prefix.kernel"
    read -r _ tcp_mem slab rss setups <"$prefix.kernel"
    read -r client_user client_sys <"$prefix.client-cpu"
    jq -c --arg profile "$profile" --argjson run "$run" --argjson tcp_mem "$tcp_mem" \
        --argjson slab "$slab" --argjson rss "$rss" --argjson setups "$setups" \
        --argjson client_cpu "$(echo "$client_user $client_sys" | awk '{ print $1 + $2 }')" '{
            profile: $profile, run: $run, tool: "loadtest", conns: .connected,
            rss_b_per_conn: $rss, kernel_tcp_mem_b_per_socket: $tcp_mem,
            kernel_slab_b_per_socket: $slab, ws_setups_per_s: $setups, tcp_setups_per_s: null,
            p99_us: .latency_us.p99, client_cpu_s: $client_cpu,
            failed: ([.failed | if type == "object" then .[] else . end] | add // 0) }' \
        "$prefix.json" >>"$results"
}

for run in $(seq "$REPEAT"); do
    for profile in $PROFILES; do
        echo "run $run/$REPEAT, profile $profile"
        applied=1
        bash tuning/apply.sh "$profile" >"$raw/apply-$profile-$run.log" 2>&1 ||
            { cat "$raw/apply-$profile-$run.log" >&2; die "apply $profile failed"; }
        read -r overflows_before cookies_before < <(queue_counters)
        "measure_$TOOL" "$profile" "$run"
        read -r overflows_after cookies_after < <(queue_counters)
        # Adds the counters' deltas to the run's line.
        last=$(tail -n 1 "$results")
        sed -i '$d' "$results"
        jq -c --argjson o $((overflows_after - overflows_before)) \
            --argjson c $((cookies_after - cookies_before)) \
            '. + {listen_overflows: $o, syncookies_sent: $c}' <<<"$last" >>"$results"
        bash tuning/revert.sh >"$raw/revert-$profile-$run.log" 2>&1 ||
            { cat "$raw/revert-$profile-$run.log" >&2; die "revert failed"; }
        applied=0
        tail -n 1 "$results"
    done
done

# The table: median (min–max) over the runs, one row per profile.
machine="$(nproc) vCPU $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
load=$(cut -d' ' -f1-3 /proc/loadavg)
case $TOOL in
idle_memory) settings="WS=$WS TCP=$TCP" ;;
loadtest) settings="CONNS=$CONNS RAMP=$RAMP DURATION=$DURATION HEARTBEAT=$HEARTBEAT BACKLOG=$BACKLOG PROCESSES=$PROCESSES${SOURCE_IPS:+ SOURCE_IPS=$SOURCE_IPS}" ;;
esac
command="PROFILES=\"$PROFILES\" REPEAT=$REPEAT TOOL=$TOOL WORKERS=$WORKERS $settings tuning/experiment.sh"
table=$(jq -rs --arg tool "$TOOL" --arg machine "$machine" --arg load "$load" \
    --arg date "$(date -u +%Y-%m-%d)" --arg cmd "$command" --arg order "$PROFILES" '
    def median: sort | if length % 2 == 1 then .[length / 2 | floor]
        else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def cell($digits): map(select(. != null)) |
        if length == 0 then "n/a"
        else ((median * $digits | round) / $digits | tostring) +
            (if min != max then " (\((min * $digits | round) / $digits)–\((max * $digits | round) / $digits))" else "" end)
        end;
    ($order | split(" ") | map(select(. != ""))) as $names |
    [group_by(.profile)[]] | sort_by(.[0].profile as $p | $names | index($p)) as $groups |
    "Measured \($date) with `\($cmd)` (tool: \($tool)); \($machine); load average at the end \($load).",
    "Median (min–max) over \($groups[0] | length) runs per profile, interleaved; kernel figures are per socket end, system-wide (both ends of each loopback connection are on this machine).",
    "",
    "| profile | connections | user-space RSS B/conn | kernel TCP buffers B/socket (sockstat mem × page) | kernel slab B/socket (meminfo Slab) | WS setups/s | TCP setups/s | p99 µs | load generator CPU s | failed | listen overflows / SYN cookies |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
    ($groups[] | "| \(.[0].profile) | \(map(.conns) | cell(1)) | \(map(.rss_b_per_conn) | cell(1)) | \(map(.kernel_tcp_mem_b_per_socket) | cell(1)) | \(map(.kernel_slab_b_per_socket) | cell(1)) | \(map(.ws_setups_per_s) | cell(1)) | \(map(.tcp_setups_per_s) | cell(1)) | \(map(.p99_us) | cell(1)) | \(map(.client_cpu_s) | cell(100)) | \(map(.failed) | add) | \(map(.listen_overflows) | add) / \(map(.syncookies_sent) | add) |")
    ' "$results")

if [[ $OUT == - ]]; then
    echo "$table"
    exit 0
fi
begin="<!-- experiment:$BLOCK:begin (tuning/experiment.sh rewrites this block) -->"
end="<!-- experiment:$BLOCK:end -->"
if [[ ! -f $OUT ]] || ! grep -qF "$begin" "$OUT"; then
    printf '\n%s\n%s\n' "$begin" "$end" >>"$OUT"
fi
python3 - "$OUT" "$begin" "$end" "$table" <<'EOF'
import sys
path, begin, end, table = sys.argv[1:]
text = open(path).read()
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(head + begin + "\n" + table + "\n" + end + tail)
EOF
echo "$table"
echo "written into $OUT"
