#!/usr/bin/env bash
# Runs the Autobahn WebSocket conformance suite (wstest -m fuzzingclient) against
# `switchboard echo` on loopback, then summarises reports/index.json and fails on any FAILED or
# UNIMPLEMENTED case, any close that is not OK/INFORMATIONAL, or fewer cases than selected.
# Sections 12 and 13 (compression) are always excluded. Stops by itself: wstest runs under a
# timeout, and a trap stops the server (SIGTERM, then SIGKILL) on any exit.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bash tests/autobahn/run.sh [--cases PATTERN...] [--self-test] [--no-build] [--tls]

  --cases PATTERN...  run only these cases ('1.*', '9.1.*', '7.5.1'; quote the stars);
                      default: every case outside sections 12 and 13
  --self-test         test against Autobahn's own echo server instead of switchboard
                      (checks this script and the suite, not our code)
  --no-build          use the existing target/release/switchboard (or $CARGO_TARGET_DIR/release)
  --tls               over wss://: the server gets a self-signed certificate made for the run
                      (openssl); Autobahn's client (Twisted's default client context) does not
                      verify certificates, so it needs no trust set up

environment:
  AUTOBAHN_SERVER_CMD  shell command that starts the server under test, with {port} for the
                       WebSocket port and {tcp_port} for the framed-TCP port (both 127.0.0.1)
  AUTOBAHN_AGENT       agent name in the reports (default: switchboard)
  AUTOBAHN_TIMEOUT     seconds allowed for wstest (default: 600)

Reports: target/autobahn/reports/index.html (open in a browser) and index.json.
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$repo/tests/autobahn"
work="$repo/target/autobahn"
venv="$work/venv"
reports="$work/reports"
max_message=16777216 # the suite's largest message (9.1.6, 9.2.6) is 16 MiB

cases=()
self_test=0
build=1
tls=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cases)
            shift
            while [[ $# -gt 0 && "$1" != --* ]]; do
                cases+=("$1")
                shift
            done
            [[ ${#cases[@]} -gt 0 ]] || { echo "autobahn: --cases needs at least one pattern" >&2; exit 2; }
            ;;
        --self-test) self_test=1; shift ;;
        --no-build) build=0; shift ;;
        --tls) tls=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "autobahn: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

log() { echo "autobahn: $*" >&2; }

bash "$here/setup.sh"
mkdir -p "$work"

agent=${AUTOBAHN_AGENT:-switchboard}
if [[ -n "${AUTOBAHN_SERVER_CMD:-}" ]]; then
    server_cmd=$AUTOBAHN_SERVER_CMD
elif [[ $self_test == 1 ]]; then
    agent=${AUTOBAHN_AGENT:-autobahn-echoserver}
    # `wstest -m echoserver` listens on every interface; this is the same server bound to loopback.
    server_cmd="'$venv/bin/python' -c 'import sys; from autobahntestsuite import choosereactor
from twisted.internet import reactor
from autobahn.twisted.websocket import listenWS
from autobahntestsuite.echo import EchoServerFactory
listenWS(EchoServerFactory(sys.argv[1]), interface=\"127.0.0.1\")
reactor.run()' ws://127.0.0.1:{port}"
else
    if [[ $build == 1 ]]; then
        log "building switchboard (release)"
        (cd "$repo" && cargo build --release --bin switchboard)
    fi
    server_cmd="'${CARGO_TARGET_DIR:-$repo/target}/release/switchboard' echo --ws 127.0.0.1:{port} --tcp 127.0.0.1:{tcp_port} --max-message $max_message"
fi
scheme=ws
if [[ $tls == 1 ]]; then
    scheme=wss
    agent="$agent-tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost -addext basicConstraints=critical,CA:FALSE \
        -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
    server_cmd="$server_cmd --tls-cert '$work/tls.crt' --tls-key '$work/tls.key'"
fi

read -r port tcp_port < <(python3 -c '
import socket
held = [socket.socket() for _ in range(2)]
for s in held:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in held))')
server_cmd=${server_cmd//\{port\}/$port}
server_cmd=${server_cmd//\{tcp_port\}/$tcp_port}

server_pid=""
wstest_pid=""
server_log="$work/server.log"
cleanup() {
    if [[ -n "$wstest_pid" ]]; then
        kill -TERM -- "-$wstest_pid" 2>/dev/null || true
        wait "$wstest_pid" 2>/dev/null || true
    fi
    stop_server
}
stop_server() {
    [[ -n "$server_pid" ]] || return 0
    local pid=$server_pid
    server_pid=""
    # setsid made the server the leader of its own process group: signal the whole group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while alive "$pid" && [[ $waited -lt 100 ]]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if alive "$pid"; then
        log "server did not stop within 10 s of SIGTERM: SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
# True while the process runs (a zombie waiting to be reaped counts as gone).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    # The state letter follows the command name, which is in parentheses and may hold spaces.
    stat=${stat##*) }
    [[ -n "$stat" && "${stat:0:1}" != Z ]]
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting server: $server_cmd"
setsid bash -c "$server_cmd" >"$server_log" 2>&1 </dev/null &
server_pid=$!

waited=0
until python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$port" 2>/dev/null; do
    if ! alive "$server_pid"; then
        log "ERROR: the server exited before accepting on 127.0.0.1:$port; its output:"
        cat "$server_log" >&2
        exit 1
    fi
    if [[ $waited -ge 300 ]]; then
        log "ERROR: nothing accepts on 127.0.0.1:$port 30 s after starting the server; its output:"
        cat "$server_log" >&2
        exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
done
log "server pid $server_pid accepts on $scheme://127.0.0.1:$port"

spec="$work/fuzzingclient.json"
python3 - "$here/fuzzingclient.json" "$spec" "$scheme://127.0.0.1:$port" "$agent" "$reports" "${cases[@]}" <<'PY'
import json, sys
template, out, url, agent, outdir, *cases = sys.argv[1:]
with open(template) as f:
    spec = json.load(f)
spec["servers"] = [{"agent": agent, "url": url}]
spec["outdir"] = outdir
if cases:
    spec["cases"] = cases
with open(out, "w") as f:
    json.dump(spec, f, indent=2)
PY

# The suite's own case selection, so a subset knows how many cases it must see in the report.
expected=$("$venv/bin/python" - "$spec" <<'PY'
import json, sys
from autobahntestsuite.case import Cases, CaseCategories, CaseSubCategories, CaseSetname, CaseBasename
from autobahntestsuite.caseset import CaseSet
spec = json.load(open(sys.argv[1]))
print(len(CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories).parseSpecCases(spec)))
PY
)
if [[ $expected -eq 0 ]]; then
    log "ERROR: no case matches ${cases[*]:-*} (sections 12 and 13 are excluded)"
    exit 2
fi

timeout_s=${AUTOBAHN_TIMEOUT:-600}
rm -rf "$reports"
wstest_log="$work/wstest.log"
log "running $expected cases with wstest -m fuzzingclient (timeout ${timeout_s} s; log ${wstest_log#"$repo"/})"
started=$SECONDS
# wstest runs in a session of its own so that the EXIT trap can stop it with its timeout wrapper;
# waiting on it in the background keeps this script responsive to SIGINT/SIGTERM.
PYTHONUNBUFFERED=1 setsid timeout --kill-after=10 "$timeout_s" \
    "$venv/bin/wstest" -m fuzzingclient -s "$spec" >"$wstest_log" 2>&1 </dev/null &
wstest_pid=$!
# One progress line per group of cases (2.*, 9.3.*, ...): the full log is in wstest.log.
tail -n +1 -F --pid="$wstest_pid" "$wstest_log" 2>/dev/null | {
    group=""
    while IFS= read -r line; do
        if [[ $line =~ ^Running\ test\ case\ ID\ ([0-9.]+)\.[0-9]+\  ]] && [[ ${BASH_REMATCH[1]} != "$group" ]]; then
            group=${BASH_REMATCH[1]}
            echo "autobahn:   $(date +%T) cases $group.*" >&2
        fi
    done
} &
progress_pid=$!
wstest_rc=0
wait "$wstest_pid" || wstest_rc=$?
wstest_pid=""
wait "$progress_pid" || true
elapsed=$((SECONDS - started))
log "wstest finished in ${elapsed} s with exit code $wstest_rc"

server_died=0
if ! alive "$server_pid"; then
    server_died=1
    log "ERROR: the server is no longer running; its output (last 40 lines):"
    tail -n 40 "$server_log" >&2
fi
stop_server

if [[ $wstest_rc -ne 0 ]]; then
    [[ $wstest_rc -eq 124 || $wstest_rc -eq 137 ]] && log "ERROR: wstest did not finish within ${timeout_s} s"
    log "ERROR: wstest failed (exit $wstest_rc); last lines of its log:"
    tail -n 30 "$wstest_log" >&2
    exit 1
fi
if [[ ! -f "$reports/index.json" ]]; then
    log "ERROR: wstest wrote no $reports/index.json"
    exit 1
fi

summary_rc=0
python3 - "$reports/index.json" "$agent" "$expected" <<'PY' || summary_rc=$?
import json, sys

path, agent, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(path) as f:
    index = json.load(f)
results = index.get(agent, {})

def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))

behaviors = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]

def counts(field):
    seen = {}
    for r in results.values():
        seen[r[field]] = seen.get(r[field], 0) + 1
    names = behaviors + sorted(set(seen) - set(behaviors))
    return "  ".join(f"{name} {seen.get(name, 0)}" for name in names)

print(f"autobahn: agent {agent}: {len(results)} cases in the report, {expected} selected")
print(f"autobahn: behavior       {counts('behavior')}")
print(f"autobahn: behaviorClose  {counts('behaviorClose')}")

failed = []
not_ok = []
for case_id in sorted(results, key=case_key):
    r = results[case_id]
    bad = r["behavior"] in ("FAILED", "UNIMPLEMENTED") or r["behaviorClose"] not in ("OK", "INFORMATIONAL")
    if bad:
        failed.append(case_id)
    if bad or r["behavior"] != "OK" or r["behaviorClose"] != "OK":
        not_ok.append(
            f"  {'FAIL' if bad else 'note'} {case_id:<9} behavior {r['behavior']:<13} "
            f"close {r['behaviorClose']:<13} {r['duration']:>5} ms  reports/{r['reportfile']}"
        )
if not_ok:
    print("autobahn: cases not OK on both counts (FAIL fails the run; open the .html for details):")
    print("\n".join(not_ok))

missing = expected - len(results)
if missing > 0:
    print(f"autobahn: ERROR: {missing} selected cases are missing from the report (did the server crash?)")
passed = len(results) - len(failed)
print(f"autobahn: {passed} passed, {len(failed) + max(missing, 0)} failed")
sys.exit(1 if failed or missing > 0 else 0)
PY

if [[ $server_died == 1 ]]; then
    log "FAIL: the server died during the run"
    exit 1
fi
if [[ $summary_rc -ne 0 ]]; then
    log "FAIL (reports: ${reports#"$repo"/}/index.html)"
    exit 1
fi
log "PASS in ${elapsed} s (reports: ${reports#"$repo"/}/index.html)"
