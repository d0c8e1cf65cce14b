#!/usr/bin/env bash
# Instruction profile of the gateway's echo path (repeatable where times are not): runs
# `switchboard echo --workers 1` under callgrind, drives it with `loadtest echo` (100 WebSocket
# connections, 20 B messages, 2,000 msgs/s for 6 s), stops it, and prints the total and the top
# functions. Loopback only; takes about 20 s. Compare totals only between runs of this script.
#   bench/profile_echo.sh                 # prints a summary; the profile stays in target/profile/
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)"; exit 1; }
cargo build --release --quiet --bin switchboard -p switchboard
cargo build --release --quiet --bin loadtest -p switchboard-loadtest
out=target/profile
mkdir -p "$out"
rm -f "$out/callgrind.out"
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
    target/release/switchboard echo --ws 127.0.0.1:0 --workers 1 >"$out/server.log" 2>&1 &
server=$!
trap 'kill -9 $server 2>/dev/null || true' EXIT
addr=""
for _ in $(seq 1 200); do
    addr=$(sed -n 's#^switchboard echo: WebSocket on ws://\([^/]*\)/$#\1#p' "$out/server.log")
    [[ -n "$addr" ]] && break
    sleep 0.1
done
[[ -n "$addr" ]] || { echo "the server did not start under valgrind"; cat "$out/server.log"; exit 1; }
target/release/loadtest echo --target "ws://$addr/" --conns 100 --size 20 --rate 2000/s \
    --duration 6s --setup-timeout 20s --quiet --json "$out/loadtest.json" >/dev/null
kill -TERM "$server"
wait "$server" || true
trap - EXIT
received=$(python3 -c "import json; print(json.load(open('$out/loadtest.json'))['received'])")
total=$(callgrind_annotate "$out/callgrind.out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
echo "messages echoed: $received"
echo "instructions, whole process: $total ($((total / received)) per message, start-up and handshakes included)"
callgrind_annotate "$out/callgrind.out" 2>/dev/null | sed -n '/file:function/,$p' | sed -n '3,12p' | cut -c1-150
