#!/usr/bin/env bash
# CPU per message of `switchboard serve` on SQLite and on PostgreSQL, side by side, at paced
# chat rates (issue #13): for each store and rate, a fresh server (`--workers 1`, a fresh data
# directory or a fresh database), `loadtest chat` with CONNS framed-TCP connections in pairs,
# one SEND in flight each, paced at RATE messages/s. Server CPU per message is the switchboard
# process's (loadtest --server-pid, over the measuring window); PostgreSQL's is its postmaster
# and every child's, from /proc, over the whole loadtest run (logins touch no store, so it idles
# through the setup). PostgreSQL runs from Debian's binaries on a temporary directory and a
# free loopback port, default settings (synchronous_commit = on, fsync on). Loopback only.
#
#   bench/store_compare.sh                         # 1,000, 3,000 and 10,000 messages/s
#   RATES="3000" DURATION=60 bench/store_compare.sh
#
# Settings (environment): RATES, DURATION (s per run), CONNS, STORES ("sqlite postgres"),
# OUT (where the JSON goes), TCP_PORT and WS_PORT (the server's listeners). Needs the release binaries:
#   cargo build --release --bin switchboard -p switchboard-loadtest --bin loadtest
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

RATES=${RATES:-"1000 3000 10000"}
DURATION=${DURATION:-20}
CONNS=${CONNS:-1000}
STORES=${STORES:-"sqlite postgres"}
OUT=${OUT:-$repo/target/store_compare/$(date -u +%Y%m%dT%H%M%SZ)}
SECRET=store-compare-secret
TCP_PORT=${TCP_PORT:-19400}
WS_PORT=${WS_PORT:-19401}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
server_bin=$target_dir/release/switchboard
loadtest_bin=$target_dir/release/loadtest
mkdir -p "$OUT"

log() { echo "store_compare: $*" >&2; }

pg_bin=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
if [[ -z $pg_bin || ! -x $pg_bin/initdb ]]; then
    log "PostgreSQL is not installed: apt-get install -y postgresql"
    exit 1
fi
pg_dir=$(mktemp -d /tmp/store-compare-pg.XXXXXX)
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[[ $(id -u) == 0 ]] && chown postgres:postgres "$pg_dir"
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server_pid=""

cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
}
trap cleanup EXIT

as_pg "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
    -o "-k $pg_dir -p $pg_port -h 127.0.0.1" start >/dev/null
log "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port"

# User + system ticks of the postmaster and its children.
pg_ticks() {
    python3 - "$(head -n 1 "$pg_dir/data/postmaster.pid")" <<'PY'
import os, sys
pm = int(sys.argv[1]); total = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        rest = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if int(pid) == pm or int(rest[1]) == pm:
        total += int(rest[11]) + int(rest[12])
print(total)
PY
}

run=0
for store in $STORES; do
    for rate in $RATES; do
        run=$((run + 1))
        data=$(mktemp -d /tmp/store-compare-data.XXXXXX)
        args=(--data "$data")
        if [[ $store == postgres ]]; then
            "$pg_bin/psql" -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE run$run"
            args+=(--store "postgres://postgres@127.0.0.1:$pg_port/run$run")
        fi
        SWITCHBOARD_JWT_SECRET=$SECRET "$server_bin" serve --workers 1 \
            --tcp 127.0.0.1:$TCP_PORT --ws 127.0.0.1:$WS_PORT "${args[@]}" >"$OUT/server-$store-$rate.log" 2>&1 &
        server_pid=$!
        for _ in $(seq 100); do
            if (exec 3<>/dev/tcp/127.0.0.1/$TCP_PORT) 2>/dev/null; then break; fi
            sleep 0.05
        done
        load=$(cut -d ' ' -f 1 /proc/loadavg)
        before=$(pg_ticks)
        log "$store at $rate/s ($CONNS connections, ${DURATION}s, load $load)"
        "$loadtest_bin" chat --target tcp://127.0.0.1:$TCP_PORT --jwt-secret "$SECRET" \
            --conns "$CONNS" --inflight 1 --rate "$rate" --duration "${DURATION}s" \
            --server-pid "$server_pid" --quiet --json "$OUT/$store-$rate.json" >/dev/null
        after=$(pg_ticks)
        kill "$server_pid"
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
        rm -rf "$data"
        python3 - "$OUT/$store-$rate.json" "$store" "$rate" "$load" "$((after - before))" \
            "$(getconf CLK_TCK)" <<'PY'
import json, sys
path, store, rate, load, ticks, hz = sys.argv[1:]
d = json.load(open(path))
pg_us = int(ticks) / int(hz) * 1e6 / max(d["received"], 1) if store == "postgres" else 0.0
d.update(store=store, target_rate=int(rate), load_1m=float(load), postgres_cpu_us_per_msg=pg_us)
json.dump(d, open(path, "w"))
PY
    done
done

python3 - "$OUT" <<'PY'
import glob, json, sys
rows = [json.load(open(p)) for p in sorted(glob.glob(sys.argv[1] + "/*.json"))]
rows.sort(key=lambda d: (d["target_rate"], d["store"]))
print(f"{'store':<9} {'asked/s':>8} {'got/s':>8} {'p50 µs':>8} {'p99 µs':>8} {'p999 µs':>8} "
      f"{'switchboard µs/msg':>19} {'postgres µs/msg':>16} {'total µs/msg':>13} {'load':>5}")
for d in rows:
    sw = d["server_cpu_s_per_million_msgs"] or 0.0
    pg = d["postgres_cpu_us_per_msg"]
    lat = d["latency_us"]
    print(f"{d['store']:<9} {d['target_rate']:>8} {d['msgs_per_sec']:>8.0f} {lat['p50']:>8} "
          f"{lat['p99']:>8} {lat['p999']:>8} {sw:>19.1f} {pg:>16.1f} {sw + pg:>13.1f} "
          f"{d['load_1m']:>5.2f}")
PY
log "JSON in $OUT"
