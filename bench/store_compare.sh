#!/usr/bin/env bash
# CPU per message of `switchboard serve` on SQLite and on PostgreSQL, side by side, at paced
# chat rates (issue #13): for each rate, store and server variant, a fresh server
# (`--workers 1`, a fresh data directory or a fresh database), IDLE logged-in framed-TCP
# connections that only hold (a second `loadtest idle`, as a node's mostly idle population),
# and `loadtest chat` with CONNS framed-TCP connections in pairs, one SEND in flight each,
# paced at RATE messages/s. Runs are interleaved (rate, then store, then variant) so the
# variants of a row share the machine's moment.
#
# Per run it prints the messages per second got, the push latency (send to the recipient's
# MESSAGE, which does not wait for the commit) and the ack latency (send to the SEND's
# response, which does), and the server's CPU per message received in the measuring window:
# the whole process and by thread (store / reactor / logic core, from /proc/PID/task/*/stat
# via loadtest --server-pid; user and system time per thread from the same files over the chat
# run), its threads' wake-ups per message sent (voluntary context switches over the chat run)
# and the requests per store transaction (/metrics). With `--workers 1` the logic core runs on
# the reactor's thread by default (`--logic-thread auto`, since 2026-12-04): its work is in the
# reactor's figures and the logic column is 0; a BASE_BIN built before then runs it on a thread
# of its own, so compare modes within one build with
# VARIANTS="--logic-thread=own --logic-thread=reactor". PostgreSQL's own CPU is its postmaster and every child's over the
# chat run. SQLite runs at `synchronous = full` (the default), PostgreSQL from Debian's
# binaries on a temporary directory and a free loopback port, default settings
# (`synchronous_commit = on`, fsync on). Loopback only; everything stops by itself.
# OUT/progress-*.log keeps loadtest's line per second (that second's push and ack p99 and
# maximum): where a long run stalls; OUT/meminfo-*.log the kernel's Dirty and Writeback each
# second beside it, and OUT/start-*.txt the chat run's start (Unix seconds, to line the
# progress log up with the server's log; RUST_LOG=switchboard::store=debug logs each checkpoint).
# A database grown by an earlier run puts a short run in a long run's regime: KEEP_DATA=DIR
# keeps each SQLite run's data directory as DIR/<run name>, SEED_DATA=DIR copies DIR into
# every SQLite run's fresh data directory before its server starts (which opens it as usual).
#
#   bench/store_compare.sh                                    # 1,000, 3,000, 10,000 msgs/s
#   RATES="3000" DURATION=60 bench/store_compare.sh
#   COMMIT_DELAYS="0 1ms 2ms" STORES=sqlite bench/store_compare.sh   # the commit cadence
#   VARIANTS="--checkpoint-pages=0 --checkpoint-pages=4000" STORES=sqlite bench/store_compare.sh
#   BASE_BIN=/tmp/base/switchboard bench/store_compare.sh     # the build before, run beside
#   RATES=3000 DURATION=1800 STORES=sqlite bench/store_compare.sh     # a long run
#   RATES=12000 DURATION=300 STORES=sqlite KEEP_DATA=/tmp/grown bench/store_compare.sh
#   SEED_DATA=/tmp/grown/sqlite-12000-current-1 RATES=3000 DURATION=600 STORES=sqlite bench/store_compare.sh
#
# Settings (environment): ARRIVALS (loadtest --arrivals: poisson, each message at its own random
# time, the default since 2026-12-04; even, the 1-ms bunches every figure before then was taken with), RATES, REPEAT (the whole set, interleaved), DURATION (s per chat run), CONNS (sending), IDLE (idle
# connections beside them, 0 for none), STORES ("sqlite postgres"), COMMIT_DELAYS (values of
# --commit-delay to run the current build with; empty: its default), STRACE (seconds: count
# the store, reactor and logic threads' system calls with `strace -c` from the middle of each
# run into OUT/strace-*.txt, at most DURATION/2; that run's CPU figures then mean nothing), VARIANTS (instead: the
# current build with each word's arguments, commas between them, e.g.
# "--checkpoint-pages=0 --checkpoint-pages=4000,--commit-delay=2ms"), BASE_BIN (another build's
# binary, run with its own defaults as variant `base`), SEED_DATA and KEEP_DATA (above, SQLite
# only), OUT (where the JSON goes), TCP_PORT
# WS_PORT and ADMIN_PORT (the server's listeners), DATA_PARENT (where each run's fresh SQLite
# data directory goes, /tmp by default: its filesystem is what the commits' syncs exercise). Needs the release binaries:
#   cargo build --release -p switchboard -p switchboard-loadtest
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

RATES=${RATES:-"1000 3000 10000"}
REPEAT=${REPEAT:-1}
DURATION=${DURATION:-20}
CONNS=${CONNS:-1000}
IDLE=${IDLE:-6000}
STORES=${STORES:-"sqlite postgres"}
COMMIT_DELAYS=${COMMIT_DELAYS:-}
VARIANTS=${VARIANTS:-}
ARRIVALS=${ARRIVALS:-poisson}
STRACE=${STRACE:-}
BASE_BIN=${BASE_BIN:-}
SEED_DATA=${SEED_DATA:-}
KEEP_DATA=${KEEP_DATA:-}
DATA_PARENT=${DATA_PARENT:-/tmp}
OUT=${OUT:-$repo/target/store_compare/$(date -u +%Y%m%dT%H%M%SZ)}
SECRET=store-compare-secret
TCP_PORT=${TCP_PORT:-19400}
WS_PORT=${WS_PORT:-19401}
ADMIN_PORT=${ADMIN_PORT:-19402}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
server_bin=$target_dir/release/switchboard
loadtest_bin=$target_dir/release/loadtest
mkdir -p "$OUT"

log() { echo "store_compare: $*" >&2; }

# Variants: "label binary extra-args...", one per line.
variants=()
[[ -n $BASE_BIN ]] && variants+=("base $BASE_BIN")
if [[ -n $VARIANTS ]]; then
    # Each word one variant of the current build: its arguments, joined by commas.
    for words in $VARIANTS; do
        variants+=("${words//--/} $server_bin ${words//,/ }")
    done
elif [[ -z $COMMIT_DELAYS ]]; then
    variants+=("current $server_bin")
else
    for delay in $COMMIT_DELAYS; do
        variants+=("delay-$delay $server_bin --commit-delay $delay")
    done
fi

# The server's listeners share ports (SO_REUSEPORT): another process on them would take part of
# the connections silently.
for port in $TCP_PORT $WS_PORT $ADMIN_PORT; do
    if ss -Hltn "sport = :$port" | grep -q .; then
        log "something already listens on 127.0.0.1:$port; choose TCP_PORT, WS_PORT, ADMIN_PORT"
        exit 1
    fi
done

pg_dir=""
if [[ " $STORES " == *" postgres "* ]]; then
    pg_bin=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    if [[ -z $pg_bin || ! -x $pg_bin/initdb ]]; then
        log "PostgreSQL is not installed: apt-get install -y postgresql"
        exit 1
    fi
    pg_dir=$(mktemp -d /tmp/store-compare-pg.XXXXXX)
fi
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
server_pid=""
idle_pid=""
meminfo_pid=""
if [[ -n $SEED_DATA && ! -d $SEED_DATA ]]; then
    log "SEED_DATA=$SEED_DATA is not a directory"
    exit 1
fi

cleanup() {
    [[ -n $idle_pid ]] && kill "$idle_pid" 2>/dev/null && wait "$idle_pid" 2>/dev/null
    [[ -n $meminfo_pid ]] && kill "$meminfo_pid" 2>/dev/null && wait "$meminfo_pid" 2>/dev/null
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    if [[ -n $pg_dir ]]; then
        as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$pg_dir"
    fi
}
trap cleanup EXIT

if [[ -n $pg_dir ]]; then
    [[ $(id -u) == 0 ]] && chown postgres:postgres "$pg_dir"
    pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres >/dev/null
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
        -o "-k $pg_dir -p $pg_port -h 127.0.0.1" start >/dev/null
    log "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port," \
        "synchronous_commit = $("$pg_bin/psql" -X -A -t -h 127.0.0.1 -p "$pg_port" -U postgres -c 'SHOW synchronous_commit')"
fi

# Per thread of process $1: name, voluntary context switches (each a sleep and a wake-up),
# write system calls, and user and system CPU ticks, as "name:switches:writes:user:system" words.
thread_switches() {
    local task name switches writes ticks
    for task in /proc/"$1"/task/*; do
        name=$(tr ' ' '_' <"$task/comm")
        switches=$(awk '/^voluntary_ctxt_switches/ { print $2 }' "$task/status")
        writes=$(awk '/^syscw/ { print $2 }' "$task/io")
        # utime and stime: fields 14 and 15, i.e. 12 and 13 after the ")" closing comm.
        ticks=$(sed 's/.*) //' "$task/stat" | awk '{ print $12 ":" $13 }')
        echo -n "$name:$switches:$writes:$ticks "
    done
}

# User + system ticks of the postmaster and its children.
pg_ticks() {
    [[ -z $pg_dir ]] && { echo 0; return; }
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
for rep in $(seq "$REPEAT"); do
for rate in $RATES; do
    for store in $STORES; do
        for variant in "${variants[@]}"; do
            read -r label bin extra <<<"$variant"
            run=$((run + 1))
            name=$store-$rate-$label-$rep
            data=$(mktemp -d "$DATA_PARENT/store-compare-data.XXXXXX")
            args=(--data "$data")
            if [[ $store == sqlite && -n $SEED_DATA ]]; then
                cp -a "$SEED_DATA"/. "$data"/
                log "seeded $data from $SEED_DATA ($(du -sh "$data" | cut -f 1))"
            fi
            if [[ $store == postgres ]]; then
                "$pg_bin/psql" -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE run$run"
                args+=(--store "postgres://postgres@127.0.0.1:$pg_port/run$run")
            fi
            # shellcheck disable=SC2086 # $extra is the variant's own arguments, split on purpose
            SWITCHBOARD_JWT_SECRET=$SECRET "$bin" serve --workers 1 --admin 127.0.0.1:$ADMIN_PORT \
                --tcp 127.0.0.1:$TCP_PORT --ws 127.0.0.1:$WS_PORT "${args[@]}" $extra \
                >"$OUT/server-$name.log" 2>&1 &
            server_pid=$!
            for _ in $(seq 100); do
                if (exec 3<>/dev/tcp/127.0.0.1/$TCP_PORT) 2>/dev/null; then break; fi
                sleep 0.05
            done
            if ((IDLE > 0)); then
                # Held for the whole chat run, set up before it (at 5,000/s by default).
                # Held through the chat run and a little past it, set up before it (5,000/s).
                setup=$((IDLE / 5000 + 3))
                "$loadtest_bin" idle --target tcp://127.0.0.1:$TCP_PORT --jwt-secret "$SECRET" \
                    --conns "$IDLE" --user-prefix idle --duration "$((setup + DURATION + 3))s" \
                    --setup-timeout 30s --quiet --json "$OUT/idle-$name.json" >/dev/null 2>&1 &
                idle_pid=$!
                sleep "$setup"
            fi
            load=$(cut -d ' ' -f 1 /proc/loadavg)
            threads_before=$(thread_switches "$server_pid")
            before=$(pg_ticks)
            log "$store at $rate/s, $label ($CONNS sending + $IDLE idle connections, ${DURATION}s, load $load)"
            if [[ -n $STRACE ]]; then
                # System calls by thread, counted for STRACE seconds from the middle of the run
                # (ptrace slows the threads: that run's CPU and latency figures are not valid).
                (
                    sleep $((DURATION / 2))
                    for task in /proc/"$server_pid"/task/*; do
                        comm=$(cat "$task/comm")
                        case $comm in store | store-ckpt | reactor-* | logic)
                            timeout -s INT "$STRACE" strace -c -p "${task##*/}" \
                                -o "$OUT/strace-$name-$comm.txt" 2>/dev/null &
                            ;;
                        esac
                    done
                    wait
                ) &
            fi
            # The kernel's dirty and writeback pages each second, beside the progress log.
            while sleep 1; do
                echo "$(date +%s.%N) $(awk '/^(Dirty|Writeback):/ { printf "%s %s kB ", $1, $2 }' /proc/meminfo)"
            done >"$OUT/meminfo-$name.log" &
            meminfo_pid=$!
            date +%s.%N >"$OUT/start-$name.txt"
            # On a seeded database, users of their own: the seed's users with the same
            # client_msg_ids (each connection counts from 1) would be answered as duplicates,
            # never written.
            chat_users=()
            [[ -n $SEED_DATA ]] && chat_users=(--user-prefix "s$(date +%s)u")
            "$loadtest_bin" chat --target tcp://127.0.0.1:$TCP_PORT --jwt-secret "$SECRET" \
                "${chat_users[@]}" \
                --conns "$CONNS" --inflight 1 --rate "$rate" --arrivals "$ARRIVALS" --duration "${DURATION}s" \
                --server-pid "$server_pid" --json "$OUT/$name.json" >/dev/null 2>"$OUT/progress-$name.log"
            kill "$meminfo_pid" 2>/dev/null || true
            wait "$meminfo_pid" 2>/dev/null || true
            meminfo_pid=""
            after=$(pg_ticks)
            threads_after=$(thread_switches "$server_pid")
            curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" >"$OUT/metrics-$name.txt" || true
            load_end=$(cut -d ' ' -f 1 /proc/loadavg)
            db_bytes=$(du -sb "$data" | cut -f 1)
            if [[ -n $idle_pid ]]; then
                wait "$idle_pid" || log "the idle connections' loadtest failed"
                idle_pid=""
            fi
            kill "$server_pid"
            wait "$server_pid" 2>/dev/null || true
            server_pid=""
            if [[ $store == sqlite && -n $KEEP_DATA ]]; then
                mkdir -p "$KEEP_DATA"
                rm -rf "${KEEP_DATA:?}/$name"
                mv "$data" "$KEEP_DATA/$name"
                log "kept the data directory in $KEEP_DATA/$name"
            else
                rm -rf "$data"
            fi
            python3 - "$OUT/$name.json" "$store" "$rate" "$label" "$load" "$load_end" \
                "$((after - before))" "$(getconf CLK_TCK)" "$db_bytes" "$run" \
                "$threads_before" "$threads_after" "$OUT/metrics-$name.txt" <<'PY'
import json, os, re, sys
(path, store, rate, label, load, load_end, ticks, hz, db_bytes, run, before, after,
 metrics) = sys.argv[1:]
d = json.load(open(path))
# Per thread name, over the chat run: wake-ups (voluntary switches), write system calls, and
# user and system CPU seconds.
def counts(words):
    out = {}
    for word in words.split():
        name, *values = word.rsplit(":", 4)
        old = out.get(name, (0, 0, 0, 0))
        out[name] = tuple(o + int(v) for o, v in zip(old, values))
    return out
b, a = counts(before), counts(after)
delta = lambda k, i: a[k][i] - b.get(k, (0, 0, 0, 0))[i]
d["thread_switches"] = {k: delta(k, 0) for k in a}
d["thread_writes"] = {k: delta(k, 1) for k in a}
d["thread_user_s"] = {k: delta(k, 2) / int(hz) for k in a}
d["thread_system_s"] = {k: delta(k, 3) / int(hz) for k in a}
# The store's transactions over the server's life (the idle and chat logins store nothing).
try:
    text = open(metrics).read()
    d["store_commits"] = float(re.search(r"^switchboard_store_batch_requests_count (\S+)", text, re.M)[1])
    d["store_requests"] = float(re.search(r"^switchboard_store_batch_requests_sum (\S+)", text, re.M)[1])
except (OSError, TypeError):
    d["store_commits"] = d["store_requests"] = None
try:
    idle_path = os.path.join(os.path.dirname(path), "idle-" + os.path.basename(path))
    d["idle_connected"] = json.load(open(idle_path))["connected"]
except OSError:
    d["idle_connected"] = 0
pg_us = int(ticks) / int(hz) * 1e6 / max(d["received"], 1) if store == "postgres" else 0.0
d.update(run=int(run), store=store, target_rate=int(rate), variant=label, load_1m=float(load),
         load_1m_end=float(load_end), postgres_cpu_us_per_msg=pg_us,
         sqlite_dir_bytes=int(db_bytes) if store == "sqlite" else None)
json.dump(d, open(path, "w"))
PY
        done
    done
done
done

python3 - "$OUT" <<'PY'
import glob, json, os, sys
rows = [json.load(open(p)) for p in sorted(glob.glob(sys.argv[1] + "/*.json"))
        if not os.path.basename(p).startswith("idle-")]
rows.sort(key=lambda d: (d["target_rate"], d["store"], d["variant"], d["run"]))
print(f"{'store':<8} {'variant':<12} {'asked/s':>7} {'got/s':>7} {'lost':>5} {'req/commit':>10} "
      f"{'push p50/p99/p999 µs':>22} {'ack p50/p99/p999 µs':>22} "
      f"{'idle':>5} {'server µs/msg':>13} {'store/reactor/logic':>21} {'pg µs/msg':>9} {'total':>7} {'load':>11}")
for d in rows:
    n = max(d["msgs_per_sec"] * d["window_s"], 1)  # the window's messages
    sw = d["server_cpu_s_per_million_msgs"] or 0.0
    threads = d.get("server_threads_cpu_s") or {}
    def per(prefix):
        return sum(v for k, v in threads.items() if k.startswith(prefix)) * 1e6 / n
    split = f"{per('store'):.1f}/{per('reactor'):.1f}/{per('logic'):.1f}"
    sent = max(d["sent"], 1)
    switches = d.get("thread_switches") or {}
    def wakes(prefix):
        return sum(v for k, v in switches.items() if k.startswith(prefix)) / sent
    wake = f"{wakes('store'):.2f}/{wakes('reactor'):.2f}/{wakes('logic'):.2f}"
    per_commit = (f"{d['store_requests'] / d['store_commits']:.1f}"
                  if d.get("store_commits") else "-")
    pg = d["postgres_cpu_us_per_msg"]
    lat, ack = d["latency_us"], d.get("ack_latency_us") or {}
    fmt = lambda l: f"{l.get('p50')}/{l.get('p99')}/{l.get('p999')}"
    print(f"{d['store']:<8} {d['variant']:<12} {d['target_rate']:>7} {d['msgs_per_sec']:>7.0f} "
          f"{d['lost']:>5} {per_commit:>10} {fmt(lat):>22} {fmt(ack):>22} {d['idle_connected']:>5} {sw:>13.1f} {split:>21} {pg:>9.1f} "
          f"{sw + pg:>7.1f} {wake:>18} {d['load_1m']:>5.2f}-{d['load_1m_end']:<5.2f}")
groups = {}
for d in rows:
    groups.setdefault((d["target_rate"], d["store"], d["variant"]), []).append(d)
if any(len(g) > 1 for g in groups.values()):
    import statistics
    print("\nmedians over the repetitions: server µs/msg (store/reactor/logic), ack p99 µs, "
          "PostgreSQL µs/msg, wake-ups per message sent (all threads)")
    for (rate, store, variant), g in sorted(groups.items()):
        med = lambda f: statistics.median(f(d) for d in g)
        def per(d, prefix):
            n = max(d["msgs_per_sec"] * d["window_s"], 1)
            return sum(v for k, v in (d.get("server_threads_cpu_s") or {}).items()
                       if k.startswith(prefix)) * 1e6 / n
        print(f"{store:<8} {variant:<12} {rate:>6}  "
              f"{med(lambda d: d['server_cpu_s_per_million_msgs'] or 0):7.1f} "
              f"({med(lambda d: per(d, 'store')):.1f}/{med(lambda d: per(d, 'reactor')):.1f}/"
              f"{med(lambda d: per(d, 'logic')):.1f})  ack p99 {med(lambda d: d['ack_latency_us']['p99'] or 0):8.0f}  "
              f"pg {med(lambda d: d['postgres_cpu_us_per_msg']):6.1f}  "
              f"wake-ups {med(lambda d: sum((d.get('thread_switches') or {}).values()) / max(d['sent'], 1)):.2f}  "
              f"n={len(g)}")
    print("\nmedians: per thread, µs of user + system CPU per message sent over the chat run, "
          "wake-ups and write system calls per message sent")
    for (rate, store, variant), g in sorted(groups.items()):
        import statistics
        cells = []
        for prefix in ("store", "reactor", "logic"):
            def of(key, d):
                return sum(v for k, v in (d.get(key) or {}).items() if k.startswith(prefix))
            per = lambda key, scale: statistics.median(of(key, d) * scale / max(d["sent"], 1) for d in g)
            cells.append(f"{prefix} {per('thread_user_s', 1e6):.1f}u+{per('thread_system_s', 1e6):.1f}s "
                         f"{per('thread_switches', 1):.2f}w {per('thread_writes', 1):.2f}wr")
        print(f"{store:<8} {variant:<12} {rate:>6}  " + "  ".join(cells))
PY
log "JSON in $OUT"
