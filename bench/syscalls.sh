#!/usr/bin/env bash
# System calls per echoed message, server by server (issue #5's CPU goal): each echo server of
# bench/compare.sh under the same `loadtest echo` load (100 WebSocket connections, 20 B, one
# message in flight each), `strace -c -f` attached for a few seconds in the middle of the run.
# strace slows the server down, so the rates here mean nothing; the calls per message do: at one
# message in flight every server must read and write each message once, and what a server does
# beyond that is its own overhead. Loopback only; each server takes about 10 s.
#
#   bench/syscalls.sh
#   SERVERS="switchboard fastwebsockets" bench/syscalls.sh
#   BASE_BIN=/tmp/base/switchboard SERVERS="switchboard-base switchboard" bench/syscalls.sh
#   SERVERS="switchboard switchboard-uring" INFLIGHT="1 16" bench/syscalls.sh   # both backends
#   BUILD=0 bench/syscalls.sh     # the release binaries already in target/, no cargo build
#
# The echoes are counted from the bytes the server's sockets sent while strace was attached
# (ss's bytes_sent; each echo is a SIZE + 2 byte frame): io_uring makes no write per message,
# and with more than one message in flight one write carries several echoes.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
command -v strace >/dev/null || { echo "strace is needed (apt-get install strace)"; exit 1; }

SERVERS=${SERVERS:-"switchboard tokio-tungstenite fastwebsockets"}
INFLIGHT=${INFLIGHT:-1}
BUILD=${BUILD:-1}
SIZE=20
target_dir=${CARGO_TARGET_DIR:-$repo/target}
peers_dir=$repo/bench/peers/target/release
out=$target_dir/syscalls
mkdir -p "$out"
port=9301

if [[ $BUILD == 1 ]]; then
    cargo build --release --quiet -p switchboard -p switchboard-loadtest
fi
if [[ $BUILD == 1 && (" $SERVERS " == *" tokio-tungstenite "* || " $SERVERS " == *" fastwebsockets "*) ]]; then
    (cd bench/peers && cargo build --release --quiet)
fi

server_cmd() {
    case $1 in
    switchboard) echo "$target_dir/release/switchboard echo --ws 127.0.0.1:$port --workers 1" ;;
    switchboard-uring) echo "$target_dir/release/switchboard echo --ws 127.0.0.1:$port --workers 1 --backend uring" ;;
    switchboard-base) echo "${BASE_BIN:?switchboard-base needs BASE_BIN} echo --ws 127.0.0.1:$port --workers 1" ;;
    tokio-tungstenite) echo "$peers_dir/tungstenite_echo --addr 127.0.0.1:$port --threads 1" ;;
    fastwebsockets) echo "$peers_dir/fastwebsockets_echo --addr 127.0.0.1:$port --threads 1" ;;
    *) echo "unknown server $1" >&2; exit 1 ;;
    esac
}

# Bytes sent so far by the server's established sockets on $port (ss's bytes_sent).
bytes_sent() {
    ss -tinH state established "( sport = :$port )" |
        grep -o 'bytes_sent:[0-9]*' | cut -d: -f2 | awk '{ s += $1 } END { print s + 0 }'
}

printf '| server | in flight | messages echoed under strace | writes per message | syscalls per message | the four most frequent, per message |\n|---|---|---|---|---|---|\n'
for inflight in $INFLIGHT; do
for server in $SERVERS; do
    # shellcheck disable=SC2046
    $(server_cmd "$server") >"$out/$server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done
    "$target_dir/release/loadtest" echo --target "ws://127.0.0.1:$port/" --conns 100 --size "$SIZE" \
        --inflight "$inflight" --duration 9s --quiet --json "$out/$server-$inflight.json" >/dev/null 2>&1 &
    load=$!
    sleep 3
    sent_before=$(bytes_sent)
    timeout -s INT 4 strace -c -f -p "$pid" -o "$out/$server-$inflight.strace" >/dev/null 2>&1 || true
    sent_after=$(bytes_sent)
    wait "$load" || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    python3 - "$out/$server-$inflight.strace" "$server" "$((sent_after - sent_before))" "$inflight" "$SIZE" <<'EOF'
import sys
path, server, sent, inflight, size = sys.argv[1:]
calls = {}
for line in open(path):
    parts = line.split()
    if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
        calls[parts[-1]] = int(parts[3])
writes = sum(calls.get(n, 0) for n in ("write", "writev", "sendto", "sendmsg"))
echoed = int(sent) // (int(size) + 2)
total = sum(calls.values())
if echoed == 0:
    print(f"| {server} | {inflight} | 0 (no bytes sent while strace was attached) | n/a | n/a | n/a |")
    sys.exit(0)
top = ", ".join(f"{n} {c / echoed:.3f}" for n, c in sorted(calls.items(), key=lambda kv: -kv[1])[:4])
print(f"| {server} | {inflight} | {echoed:,} | {writes / echoed:.3f} | {total / echoed:.3f} | {top} |")
EOF
done
done
