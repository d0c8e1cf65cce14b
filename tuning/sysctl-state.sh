# shellcheck shell=bash
# Sourced by apply.sh and revert.sh: reading profiles, reading and writing sysctl keys, and the
# state file that holds the values apply.sh replaced. Defines functions only; never changes a
# kernel setting by being sourced.

# Where apply.sh keeps the replaced values until revert.sh restores them. /var/tmp survives a
# reboot, but sysctl values do not: after a reboot, revert.sh restores what the save says, which
# are the same stock values, and removes the stale save.
# shellcheck disable=SC2034 # used by the scripts that source this file
STATE_FILE="${SWITCHBOARD_TUNING_STATE:-/var/tmp/switchboard-tuning.saved}"

die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

require_root() {
    # $* is only for the message (the command to retry with sudo).
    if [[ $(id -u) -ne 0 ]]; then
        die "must run as root: sysctl -w writes /proc/sys (try: sudo $0 $*)"
    fi
}

# Collapses runs of blanks and tabs to single spaces (sysctl -n separates fields with tabs).
normalize() {
    local -a words
    read -ra words <<<"$1"
    echo "${words[*]}"
}

# Whether the running kernel has the key (e.g. net.netfilter.* only with nf_conntrack loaded).
key_exists() {
    [[ -e /proc/sys/${1//.//} ]]
}

current_value() {
    normalize "$(sysctl -n "$1")"
}

# Prints "key<TAB>value" for every setting of a sysctl.d-style profile (comments start with #
# or ;); fails on a line that is not `key = value` so a typo never passes silently.
read_profile() {
    local file=$1 line key value number=0
    while IFS= read -r line || [[ -n $line ]]; do
        number=$((number + 1))
        line=${line%%[#;]*}
        [[ $line =~ ^[[:space:]]*$ ]] && continue
        if [[ ! $line =~ ^[[:space:]]*([A-Za-z0-9_./-]+)[[:space:]]*=[[:space:]]*(.*[^[:space:]])[[:space:]]*$ ]]; then
            die "$file:$number: not a 'key = value' line: $line"
        fi
        key=${BASH_REMATCH[1]}
        value=$(normalize "${BASH_REMATCH[2]}")
        printf '%s\t%s\n' "$key" "$value"
    done <"$file"
}

# Writes key=value and checks the kernel reads it back; prints the change. Returns 1 (with a
# message) when the write fails or does not stick (a read-only key, one this namespace may not
# change, a value the kernel clamps).
write_key() {
    local key=$1 value=$2 before after output
    before=$(current_value "$key")
    if ! output=$(sysctl -w "$key=$value" 2>&1); then
        echo "  FAILED  $key = $value: $output" >&2
        return 1
    fi
    after=$(current_value "$key")
    if [[ $after != "$value" ]]; then
        echo "  FAILED  $key: wrote '$value', the kernel reads back '$after'" >&2
        return 1
    fi
    if [[ $before == "$after" ]]; then
        printf '  same    %s = %s\n' "$key" "$after"
    else
        printf '  set     %s = %s (was %s)\n' "$key" "$after" "$before"
    fi
}
