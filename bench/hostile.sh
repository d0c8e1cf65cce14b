#!/usr/bin/env bash
# Hostile clients against a fresh `switchboard echo --workers 1` (issue #10): for each attack, a
# victim workload (`loadtest echo`: VICTIM_CONNS WebSocket connections, SIZE-byte messages, one
# in flight each) runs alone (baseline), then again while bench's `hostile` tool attacks from
# ATTACK_CONNS connections for ATTACK_S seconds, all on this machine's cores. Prints per attack:
# the victim's msgs/s and p99 under attack against its baseline, the server's RSS before, at its
# peak (sampled every 100 ms) and SETTLE_S seconds after the attack ended, its open fds at the
# same three points, and how and when the server cut the attacking connections. Loopback only;
# every run stops by itself. See ../shared/design/measuring.md: on 2 shared cores, read ratios.
#
# The server runs with the limits an operator facing these clients would set (SERVER_ARGS): a
# message rate per connection far above what the victim, one message in flight, ever sends.
# The attackers connect from ATTACK_IP and the victim from VICTIM_IPS, so the per-IP limits
# (PER_IP_ARGS, on for reconnect-flood only, where they are the defence under test) tell them
# apart; the victim's 100 connections spread over 10 addresses stay under them.
#
#   bench/hostile.sh                                   # ~3 minutes
#   ATTACKS="ping-flood" bench/hostile.sh
#   SERVER=/path/to/older/switchboard bench/hostile.sh   # the same attacks against another build
#   PEER=fastwebsockets bench/hostile.sh                # a peer of bench/peers (WebSocket attacks)
#
# Settings (environment): ATTACKS (ping-flood pong-flood slow-readers ws-data-flood
# tcp-ping-flood reconnect-flood slowloris, and reconnect-flood-elsewhere: the control, the
# same attackers aimed at a second server process while the victim uses its own), SERVER (the switchboard binary), SERVER_ARGS (extra server
# options), PEER (fastwebsockets or tungstenite: run that echo server of bench/peers instead,
# one thread, with no options; the framed-TCP attacks are skipped, as it has no such port),
# PER_IP_ARGS (per-IP limits for reconnect-flood; empty: none), ATTACK_IP,
# VICTIM_IPS, VICTIM_CONNS, SIZE, VICTIM_S (seconds per victim run), ATTACK_S, SETTLE_S, OUT,
# PROBE_IP and PROBE_RATE (one framed-TCP connection echoing at that pace while the victim runs,
# so the table shows the other port answering too), ATTACK_CONNECT_TIMEOUT_MS (reconnect-flood: the
# attackers give up an unanswered connect after this many ms and try again at once; unset, a
# connect waits as long as the kernel retries, up to the end of the attack).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
target_dir=${CARGO_TARGET_DIR:-$repo/target}

ATTACKS=${ATTACKS:-"ping-flood pong-flood slow-readers ws-data-flood tcp-ping-flood reconnect-flood"}
PEER=${PEER:-}
SERVER=${SERVER:-$target_dir/release/switchboard}
SERVER_ARGS=${SERVER_ARGS-"--read-wait 5s --message-rate 4000 --message-burst 200"}
PER_IP_ARGS=${PER_IP_ARGS-"--max-conns-per-ip 10 --ip-connect-burst 20 --ip-connect-rate 10"}
ATTACK_IP=${ATTACK_IP:-127.0.0.100}
VICTIM_IPS=${VICTIM_IPS:-127.0.0.1-127.0.0.10}
PROBE_IP=${PROBE_IP:-127.0.0.20}
PROBE_RATE=${PROBE_RATE:-50}
ATTACK_CONNECT_TIMEOUT_MS=${ATTACK_CONNECT_TIMEOUT_MS:-}
VICTIM_CONNS=${VICTIM_CONNS:-100}
SIZE=${SIZE:-20}
VICTIM_S=${VICTIM_S:-5}
ATTACK_S=${ATTACK_S:-7}
SETTLE_S=${SETTLE_S:-10}
OUT=${OUT:-$repo/target/hostile/$(date -u +%Y%m%dT%H%M%SZ)}

log() { echo "hostile: $*" >&2; }

# Attacking connections and extra arguments per attack (the issue's numbers).
attack_conns() {
    case $1 in
        slow-readers) echo 50 ;;
        slowloris) echo 1000 ;;
        *) echo 100 ;;
    esac
}

# Server options per attack, on top of SERVER_ARGS.
attack_args() {
    case $1 in
        reconnect-flood) echo "$PER_IP_ARGS" ;;
        *) echo "" ;;
    esac
}

if [[ -n $PEER ]]; then
    log "building bench/peers' ${PEER}_echo (release)"
    (cd bench/peers && cargo build --release --quiet --bin "${PEER}_echo")
    kept=""
    for attack in $ATTACKS; do
        case $attack in
            tcp-ping-flood | reconnect-flood*) log "$attack skipped: $PEER has no framed-TCP port" ;;
            *) kept="$kept $attack" ;;
        esac
    done
    ATTACKS=$kept
    SERVER_ARGS="(none: $PEER has no limits to set)"
    PER_IP_ARGS=""
fi
log "building switchboard, loadtest and hostile (release)"
cargo build --release --quiet --bin switchboard
cargo build --release --quiet -p switchboard-loadtest --bin loadtest
cargo build --release --quiet -p switchboard-bench --bin hostile
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

server_pid=""
other_pid=""
sampler_pid=""
stop_all() {
    if [[ -n $other_pid ]]; then
        kill "$other_pid" 2>/dev/null || true
        wait "$other_pid" 2>/dev/null || true
        other_pid=""
    fi
    if [[ -n $sampler_pid ]]; then
        kill "$sampler_pid" 2>/dev/null || true
        wait "$sampler_pid" 2>/dev/null || true
        sampler_pid=""
    fi
    [[ -n $server_pid ]] || return 0
    local pid=$server_pid waited=0
    server_pid=""
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [[ $waited -lt 150 ]]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
fds() { ls "/proc/$1/fd" | wc -l; }

for attack in $ATTACKS; do
    ws_port=$(free_port)
    tcp_port=$(free_port)
    logfile="$OUT/server-$attack.log"
    : >"$logfile"
    if [[ -n $PEER ]]; then
        "bench/peers/target/release/${PEER}_echo" --addr "127.0.0.1:$ws_port" --threads 1 \
            >"$logfile" 2>&1 </dev/null &
        ready="listening on"
    else
        # shellcheck disable=SC2086
        bash -c "exec $SERVER echo --workers 1 --ws 127.0.0.1:$ws_port --tcp 127.0.0.1:$tcp_port $SERVER_ARGS $(attack_args "$attack")" \
            >"$logfile" 2>&1 </dev/null &
        ready="^switchboard echo: WebSocket on"
    fi
    server_pid=$!
    waited=0
    until grep -q "$ready" "$logfile" 2>/dev/null; do
        if ! kill -0 "$server_pid" 2>/dev/null || [[ $waited -ge 100 ]]; then
            log "ERROR: the server did not start:"
            cat "$logfile" >&2
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    # Which backend really runs (the gateway falls back to epoll, with a log line, when
    # io_uring is refused): an io_uring instance among the server's descriptors says io_uring.
    if ls -l "/proc/$server_pid/fd" 2>/dev/null | grep -q 'anon_inode:\[io_uring\]'; then
        backend=io_uring
    else
        backend=epoll
    fi
    echo "$backend" >"$OUT/$attack-backend.txt"
    log "$attack: the server runs on $backend"
    if [[ $SERVER_ARGS == *"--backend uring"* && $backend != io_uring ]]; then
        log "ERROR: --backend uring asked, but the server runs on epoll:"
        cat "$logfile" >&2
        exit 1
    fi
    victim=(target/release/loadtest echo --target "ws://127.0.0.1:$ws_port/" --conns "$VICTIM_CONNS"
        --size "$SIZE" --inflight 1 --duration "${VICTIM_S}s" --source-ips "$VICTIM_IPS" --quiet)
    log "$attack: baseline"
    "${victim[@]}" --json "$OUT/$attack-baseline.json" >/dev/null
    sleep 1
    rss_before=$(rss_kib "$server_pid")
    fds_before=$(fds "$server_pid")
    (
        while kill -0 "$server_pid" 2>/dev/null; do
            echo "$(date +%s.%N) $(rss_kib "$server_pid") $(fds "$server_pid")"
            sleep 0.1
        done
    ) >"$OUT/$attack-samples.txt" 2>/dev/null &
    sampler_pid=$!
    target=127.0.0.1:$ws_port
    [[ $attack == tcp-ping-flood || $attack == reconnect-flood ]] && target=127.0.0.1:$tcp_port
    tool_attack=$attack
    if [[ $attack == reconnect-flood-elsewhere ]]; then
        # The control: the same attackers aimed at a second server process with the same
        # limits, so what the victim loses is the attack's cost to the machine, not to its server.
        other_tcp=$(free_port)
        # shellcheck disable=SC2086
        "$SERVER" echo --workers 1 --tcp "127.0.0.1:$other_tcp" $SERVER_ARGS $PER_IP_ARGS \
            >"$OUT/server-$attack-other.log" 2>&1 </dev/null &
        other_pid=$!
        sleep 0.5
        target=127.0.0.1:$other_tcp
        tool_attack=reconnect-flood
    fi
    log "$attack: $(attack_conns "$attack") attackers for ${ATTACK_S}s, victim alongside"
    attack_start=$(date +%s.%N)
    cpu_start=$(cpu_ticks "$server_pid")
    /usr/bin/time -f '%U %S' -o "$OUT/$attack-attacker-cpu.txt" \
        target/release/hostile "$tool_attack" --target "$target" --conns "$(attack_conns "$attack")" \
        --duration "$ATTACK_S" --bind "$ATTACK_IP" \
        ${ATTACK_CONNECT_TIMEOUT_MS:+--connect-timeout-ms "$ATTACK_CONNECT_TIMEOUT_MS"} >"$OUT/$attack-attack.json" &
    attacker_pid=$!
    sleep 0.5
    probe_pid=""
    if [[ -z $PEER ]]; then
        # The framed-TCP port, probed at a slow pace from an address of its own while the
        # victim (WebSocket) runs: the server must answer on both ports throughout.
        target/release/loadtest echo --target "tcp://127.0.0.1:$tcp_port" --conns 1 --size "$SIZE" \
            --inflight 1 --rate "$PROBE_RATE/s" --duration "${VICTIM_S}s" --source-ips "$PROBE_IP" \
            --quiet --json "$OUT/$attack-probe.json" >/dev/null 2>"$OUT/$attack-probe.err" &
        probe_pid=$!
    fi
    "${victim[@]}" --json "$OUT/$attack-under.json" >/dev/null || true
    [[ -z $probe_pid ]] || wait "$probe_pid" || true
    wait "$attacker_pid" || true
    attack_end=$(date +%s.%N)
    cpu_end=$(cpu_ticks "$server_pid")
    echo "$cpu_start $cpu_end $(getconf CLK_TCK)" >"$OUT/$attack-server-cpu.txt"
    if [[ -n $other_pid ]]; then
        kill "$other_pid" 2>/dev/null || true
        wait "$other_pid" 2>/dev/null || true
        other_pid=""
    fi
    log "$attack: settling ${SETTLE_S}s"
    sleep "$SETTLE_S"
    rss_after=$(rss_kib "$server_pid")
    fds_after=$(fds "$server_pid")
    grep -c "closing" "$logfile" >"$OUT/$attack-closing-lines.txt" || true
    stop_all
    printf '%s %s %s %s %s %s\n' "$rss_before" "$fds_before" "$rss_after" "$fds_after" \
        "$attack_start" "$attack_end" >"$OUT/$attack-points.txt"
done

python3 - "$OUT" "$ATTACKS" "$SERVER" "$SERVER_ARGS" "$VICTIM_CONNS" "$SIZE" "$PER_IP_ARGS" "$PROBE_RATE" <<'EOF'
import json, os, sys
out, attacks, server, server_args, conns, size, per_ip_args, probe_rate = sys.argv[1:]
load = open("/proc/loadavg").read().split()[:3]
peer = os.environ.get("PEER")
if peer:
    server = f"bench/peers {peer}_echo --threads 1"
print(f"\nserver: {server} echo --workers 1 {server_args} (reconnect-flood: + {per_ip_args or 'nothing'}); "
      f"victim: loadtest echo, {conns} WebSocket connections, {size} B, 1 in flight; "
      f"attackers' connect timeout: {os.environ.get('ATTACK_CONNECT_TIMEOUT_MS') or 'none'} ms; "
      f"load average at the end {' '.join(load)}\n")
head = ("| attack | backend | victim msgs/s (base → under) | ratio | victim p99 ms (base → under) | ratio "
        "| RSS MiB before / peak / +10 s | fds before / peak / after | attackers cut | how | cut after s (first / median / last) "
        "| CPU s during the attack: server / attacker | TCP port probe: echoes/s, p99 ms |")
print(head)
print("|" + "---|" * (head.count("|") - 1))
def cpu(attack):
    try:
        start, end, hz = map(int, open(f"{out}/{attack}-server-cpu.txt").read().split())
        user, system = map(float, open(f"{out}/{attack}-attacker-cpu.txt").read().split()[-2:])
        return f"{(end - start) / hz:.2f} / {user + system:.2f}"
    except (OSError, ValueError):
        return "n/a"
def probe(attack):
    # The framed-TCP port during the attack (none on a peer): answers per second against the
    # probe's pace, or "no answer" when it could not connect or got nothing back.
    try:
        p = json.load(open(f"{out}/{attack}-probe.json"))
    except (OSError, ValueError):
        return "n/a" if peer else "no answer"
    if not p["msgs_per_sec"]:
        return "no answer"
    return f"{p['msgs_per_sec']:.0f} of {probe_rate}, {p['latency_us']['p99'] / 1000:.2f}"
for attack in attacks.split():
    base = json.load(open(f"{out}/{attack}-baseline.json"))
    try:
        under = json.load(open(f"{out}/{attack}-under.json"))
    except (OSError, ValueError):
        under = {"msgs_per_sec": 0, "latency_us": {"p99": None}}
    a = json.load(open(f"{out}/{attack}-attack.json"))
    before, fds_before, after, fds_after, t0, t1 = open(f"{out}/{attack}-points.txt").read().split()
    peak_rss, peak_fds = 0, 0
    for line in open(f"{out}/{attack}-samples.txt"):
        parts = line.split()
        if len(parts) == 3 and float(parts[0]) >= float(t0) and float(parts[0]) <= float(t1):
            peak_rss, peak_fds = max(peak_rss, int(parts[1])), max(peak_fds, int(parts[2]))
    bm, um = base["msgs_per_sec"], under["msgs_per_sec"]
    bp, up = base["latency_us"]["p99"], under["latency_us"]["p99"]
    fmt_ms = lambda us: "n/a" if us is None else f"{us / 1000:.2f}"
    ratio_p99 = "n/a" if not bp or up is None else f"{up / bp:.1f}×"
    hows = ", ".join(f"{k} {v}" for k, v in a["how"].items())
    if "echoed_packets" in a:
        hows += f" ({a['echoed_packets']:,} packets echoed to the attackers)"
    try:
        backend = open(f"{out}/{attack}-backend.txt").read().strip()
    except OSError:
        backend = "n/a"
    print(f"| {attack} | {backend} | {bm:,.0f} → {um:,.0f} | {um / bm:.0%} | {fmt_ms(bp)} → {fmt_ms(up)} | {ratio_p99} "
          f"| {int(before) / 1024:.1f} / {peak_rss / 1024:.1f} / {int(after) / 1024:.1f} "
          f"| {fds_before} / {peak_fds} / {fds_after} | {a['cut']} of {a.get('connections', a['conns'])} | {hows} "
          f"| {a['first_cut_s']} / {a['median_cut_s']} / {a['last_cut_s']} | {cpu(attack)} | {probe(attack)} |")
print(f"\nevery run's files: {out}")
EOF
