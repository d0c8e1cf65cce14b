#!/usr/bin/env bash
# Installs the Autobahn WebSocket test suite (`wstest`) into target/autobahn/venv.
# The suite is Python 2 code, so the venv is built from pyenv's Python 2.7.18 with every
# package pinned. Idempotent: a venv whose stamp matches the pins and whose wstest runs is kept
# as it is (well under a second); anything else is removed and rebuilt from scratch (~30 s).
#
# Environment:
#   AUTOBAHN_PYTHON2   a python2.7 interpreter to use instead of pyenv's 2.7.18
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work="$repo/target/autobahn"
venv="$work/venv"
stamp="$venv/.switchboard-pins"

# virtualenv 20.15.1 is the last release that runs on Python 2.7 (20.16 needs 3.6+).
virtualenv_pin='virtualenv==20.15.1'
# Everything wstest imports, pinned to the versions this script was checked with. The suite's own
# release pins most of them; the rest are the last releases that still support Python 2.7.
pins='autobahntestsuite==25.10.1
autobahn[accelerate,twisted]==0.10.9
argparse==1.4.0
attrs==21.4.0
Automat==22.10.0
cffi==1.15.1
constantly==15.1.0
cryptography==3.3.2
enum34==1.1.10
hyperlink==21.0.0
idna==2.10
incremental==16.10.1
ipaddress==1.0.23
Jinja2==2.11.3
klein==17.10.0
linecache2==1.0.0
MarkupSafe==1.1.1
pyasn1==0.5.1
pyasn1-modules==0.3.0
pycparser==2.21
PyHamcrest==1.10.1
pyOpenSSL==19.1.0
service-identity==18.1.0
setuptools==44.0.0
six==1.16.0
traceback2==1.4.0
Twisted==19.10.0
txaio==2.1.0
typing==3.10.0.0
ujson==2.0.3
unittest2==1.1.0
Werkzeug==1.0.1
wsaccel==0.6.6
zope.interface==4.6.0'

log() { echo "autobahn/setup: $*" >&2; }

# Runs a pip command with its Python 2 deprecation chatter hidden, showing everything if it fails.
quiet_pip() {
    local out
    out=$(mktemp)
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$@" >"$out" 2>&1; then
        grep -v DEPRECATION "$out" >&2 || true
        rm -f "$out"
        log "ERROR: failed: $*"
        return 1
    fi
    rm -f "$out"
}

wstest_works() {
    [[ -x "$venv/bin/wstest" ]] && "$venv/bin/wstest" --autobahnversion >/dev/null 2>&1
}

if [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$pins" ]] && wstest_works; then
    log "wstest ready in ${venv#"$repo"/}"
    exit 0
fi

find_python2() {
    if [[ -n "${AUTOBAHN_PYTHON2:-}" ]]; then
        echo "$AUTOBAHN_PYTHON2"
        return
    fi
    if command -v pyenv >/dev/null 2>&1; then
        local prefix
        if prefix=$(pyenv prefix 2.7.18 2>/dev/null) && [[ -x "$prefix/bin/python2.7" ]]; then
            echo "$prefix/bin/python2.7"
            return
        fi
    fi
    local direct="${PYENV_ROOT:-$HOME/.pyenv}/versions/2.7.18/bin/python2.7"
    if [[ -x "$direct" ]]; then
        echo "$direct"
        return
    fi
    # A python2.7 on PATH that is not a pyenv shim without a 2.7 version selected.
    if command -v python2.7 >/dev/null 2>&1 && python2.7 -c 'import sys; assert sys.version_info[:2] == (2, 7)' >/dev/null 2>&1; then
        command -v python2.7
        return
    fi
    return 1
}

if ! python2=$(find_python2) || ! "$python2" -c 'import sys; assert sys.version_info[:2] == (2, 7)' >/dev/null 2>&1; then
    cat >&2 <<'MSG'
autobahn/setup: ERROR: no Python 2.7 interpreter found.
  The Autobahn test suite (wstest) runs only on Python 2.7; this script looks for pyenv's
  2.7.18 (`pyenv prefix 2.7.18`), then for a working `python2.7` on PATH.
  Fix one of:
    - `pyenv install 2.7.18` (builds CPython from source: needs the python.org download and
      Debian's build-essential, libssl-dev, zlib1g-dev, libbz2-dev, libreadline-dev,
      libsqlite3-dev, libffi-dev);
    - point AUTOBAHN_PYTHON2 at any python2.7 binary (with its headers, wsaccel compiles C).
  Debian 12 has no python2 package, so apt cannot provide one.
MSG
    exit 1
fi
log "using $python2 ($("$python2" --version 2>&1))"

if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
    log "no C compiler (wsaccel builds a C extension): installing gcc"
    apt-get update -qq && apt-get install -y -qq gcc libc6-dev
fi

started=$SECONDS
rm -rf "$venv" "$work/virtualenv-py2"
mkdir -p "$work"

# virtualenv goes into a private --target dir so nothing is installed into pyenv's interpreter.
quiet_pip "$python2" -m pip install --no-warn-script-location \
    --target "$work/virtualenv-py2" "$virtualenv_pin"
PYTHONPATH="$work/virtualenv-py2" VIRTUALENV_OVERRIDE_APP_DATA="$work/virtualenv-appdata" \
    "$python2" -m virtualenv --quiet --no-periodic-update "$venv"

requirements="$work/requirements-py2.txt"
printf '%s\n' "$pins" >"$requirements"
# --no-deps with the full pin list: the resolver of pip 20 on Python 2 cannot move anything.
quiet_pip "$venv/bin/pip" install --no-deps -r "$requirements"
quiet_pip "$venv/bin/pip" check

if ! wstest_works; then
    "$venv/bin/wstest" --autobahnversion >&2 || true
    log "ERROR: wstest was installed but does not run"
    exit 1
fi
printf '%s' "$pins" >"$stamp"
log "wstest ready in ${venv#"$repo"/} ($("$venv/bin/wstest" --autobahnversion 2>/dev/null | tr '\n' ' ')) after $((SECONDS - started)) s"
