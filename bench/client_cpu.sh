#!/usr/bin/env bash
# Client CPU per message of two `loadtest` binaries side by side: A and B run the same echo load
# against the same `switchboard echo` (one fresh server process per run, `--workers 1`), REPEAT
# times interleaved A, B, A, B, ... Prints per run and as medians: messages received, msgs/s and
# the client's CPU µs per message (utime + stime of the whole loadtest process from
# /usr/bin/time, ramp and drain included, divided by every echo it received), with B's ratio to
# A's. For changes to the client side (the codec's ClientLink, loadtest's engine). Loopback
# only; every run stops by itself.
#
#   bench/client_cpu.sh OLD/loadtest target/release/loadtest          # ws, defaults below
#   TRANSPORT=tcp REPEAT=5 bench/client_cpu.sh A B [SERVER_BINARY]
#
# Settings (environment): TRANSPORT (ws|tcp), CONNS, SIZE (bytes), INFLIGHT, DURATION (s),
# REPEAT. SERVER_BINARY defaults to target/release/switchboard.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
A=${1:?usage: bench/client_cpu.sh A_LOADTEST B_LOADTEST [SERVER_BINARY]}
B=${2:?usage: bench/client_cpu.sh A_LOADTEST B_LOADTEST [SERVER_BINARY]}
SERVER=${3:-$repo/target/release/switchboard}
TRANSPORT=${TRANSPORT:-ws}
CONNS=${CONNS:-100}
SIZE=${SIZE:-64}
INFLIGHT=${INFLIGHT:-16}
DURATION=${DURATION:-8}
REPEAT=${REPEAT:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # binary, result file prefix
    local p server
    p=$(port)
    if [[ $TRANSPORT == ws ]]; then
        "$SERVER" echo --ws "127.0.0.1:$p" --workers 1 >/dev/null 2>&1 &
    else
        "$SERVER" echo --tcp "127.0.0.1:$p" --workers 1 >/dev/null 2>&1 &
    fi
    server=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
        sleep 0.1
    done
    local target="ws://127.0.0.1:$p/"
    [[ $TRANSPORT == tcp ]] && target="tcp://127.0.0.1:$p"
    /usr/bin/time -f '%U %S' -o "$2.time" "$1" echo --target "$target" --conns "$CONNS" \
        --size "$SIZE" --inflight "$INFLIGHT" --duration "${DURATION}s" --server-pid "$server" \
        --json "$2.json" >"$2.log" 2>&1
    kill "$server"
    wait "$server" 2>/dev/null || true
}

echo "client_cpu: $TRANSPORT, $CONNS conns, $SIZE B, $INFLIGHT in flight, ${DURATION}s, $REPEAT x (A, B); load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for i in $(seq "$REPEAT"); do
    run "$A" "$out/a$i"
    run "$B" "$out/b$i"
done
python3 - "$out" "$REPEAT" <<'EOF'
import json, statistics, sys
out, repeat = sys.argv[1], int(sys.argv[2])
def figures(name):
    summary = json.load(open(f"{out}/{name}.json"))
    user, system = map(float, open(f"{out}/{name}.time").read().split()[-2:])
    failed = sum(summary["failed"].values())
    return summary["received"], summary["msgs_per_sec"], (user + system) * 1e6 / max(summary["received"], 1), failed
rows = {side: [figures(f"{side}{i}") for i in range(1, repeat + 1)] for side in "ab"}
print("run  side  received   msgs/s  client CPU µs/msg  failed")
for i in range(repeat):
    for side in "ab":
        r = rows[side][i]
        print(f"{i + 1:>3}  {side.upper():>4}  {r[0]:>8}  {r[1]:>7.0f}  {r[2]:>17.2f}  {r[3]:>6}")
med = {side: [statistics.median(r[k] for r in rows[side]) for k in range(3)] for side in "ab"}
for side in "ab":
    print(f"median {side.upper()}: {med[side][1]:.0f} msgs/s, {med[side][2]:.2f} µs/msg client CPU")
print(f"B/A client CPU per message: {med['b'][2] / med['a'][2]:.3f}")
EOF
echo "client_cpu: load at the end $(cut -d' ' -f1-3 /proc/loadavg)" >&2
