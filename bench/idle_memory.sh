#!/usr/bin/env bash
# Memory per idle connection (issue #3): builds the server and the idle_memory tool, then runs
# it REPEAT times (each on a fresh server process) for every worker count in WORKERS.
# Loopback only; each run takes about 7 s. Extra arguments go to idle_memory
# (e.g. --ws 5000 --tcp 0, --tcp-first).
#   bench/idle_memory.sh                 # 9,000 WS + 9,000 TCP, --workers 2 then 1, 3 runs each
#   REPEAT=5 WORKERS="2" bench/idle_memory.sh --tcp-first
#   BASE_BIN=/tmp/base/switchboard bench/idle_memory.sh   # runs alternate: that build, then this
#   bench/idle_memory.sh --tls           # both listeners on TLS: a full handshake per connection
#   BACKENDS="epoll uring" bench/idle_memory.sh   # runs alternate: the epoll, then the io_uring backend
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT="${REPEAT:-3}"
WORKERS="${WORKERS:-2 1}"
cargo build --release --quiet --bin switchboard
cargo build --release --quiet -p switchboard-bench --bin idle_memory
BACKENDS="${BACKENDS:-epoll}"
for workers in $WORKERS; do
    if [[ $BACKENDS != epoll ]]; then
        for run in $(seq "$REPEAT"); do
            for backend in $BACKENDS; do
                echo "=== --workers $workers, run $run, --backend $backend ==="
                SWITCHBOARD_BACKEND=$backend target/release/idle_memory \
                    --server-bin target/release/switchboard --workers "$workers" --repeat 1 "$@"
            done
        done
        continue
    fi
    if [[ -z ${BASE_BIN:-} ]]; then
        echo "=== --workers $workers ==="
        target/release/idle_memory --server-bin target/release/switchboard \
            --workers "$workers" --repeat "$REPEAT" "$@"
        continue
    fi
    for run in $(seq "$REPEAT"); do
        for bin in "$BASE_BIN" target/release/switchboard; do
            echo "=== --workers $workers, run $run, $bin ==="
            target/release/idle_memory --server-bin "$bin" --workers "$workers" --repeat 1 "$@"
        done
    done
done
