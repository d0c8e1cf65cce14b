#!/usr/bin/env bash
# Applies a sysctl profile key by key after saving the values it replaces (to $STATE_FILE,
# default /var/tmp/switchboard-tuning.saved) so that tuning/revert.sh can put them back.
# Keys the kernel does not have (conntrack not loaded) are skipped with a message. Refuses to
# overwrite a save that was not reverted, unless it was made by this same profile (then it
# re-applies and keeps the original save: running it twice is harmless).
#   tuning/apply.sh tuning/profiles/million.conf     # or just: tuning/apply.sh million
#   tuning/apply.sh --dry-run million                # show what would change (no root needed)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tuning/sysctl-state.sh
. "$here/sysctl-state.sh"

dry_run=0
if [[ ${1:-} == --dry-run ]]; then
    dry_run=1
    shift
fi
if [[ $# -ne 1 ]]; then
    echo "usage: ${0##*/} [--dry-run] PROFILE   (a file, or a name in $here/profiles/)" >&2
    exit 2
fi
profile=$1
if [[ ! -f $profile && -f $here/profiles/$profile.conf ]]; then
    profile=$here/profiles/$profile.conf
fi
[[ -f $profile ]] || die "no profile $1 (neither a file nor $here/profiles/$1.conf)"
profile=$(realpath "$profile")

# Parsed into a variable first: a malformed line must stop the script, which a failure inside
# a process substitution would not.
parsed=$(read_profile "$profile")
keys=()
values=()
while IFS=$'\t' read -r key value; do
    [[ -n $key ]] || continue
    keys+=("$key")
    values+=("$value")
done <<<"$parsed"
[[ ${#keys[@]} -gt 0 ]] || die "$profile sets no keys"

if [[ $dry_run -eq 1 ]]; then
    echo "$profile (dry run; nothing written):"
    for i in "${!keys[@]}"; do
        if ! key_exists "${keys[$i]}"; then
            printf '  skip    %s: not in this kernel\n' "${keys[$i]}"
        else
            printf '  %-7s %s = %s (now %s)\n' \
                "$([[ $(current_value "${keys[$i]}") == "${values[$i]}" ]] && echo same || echo change)" \
                "${keys[$i]}" "${values[$i]}" "$(current_value "${keys[$i]}")"
        fi
    done
    exit 0
fi

require_root "$@"
identity="profile=$profile sha256=$(sha256sum "$profile" | cut -d' ' -f1)"

if [[ -e $STATE_FILE ]]; then
    saved_identity=$(sed -n 's/^# switchboard-tuning save: //p' "$STATE_FILE" | head -n 1)
    if [[ $saved_identity != "$identity" ]]; then
        die "$STATE_FILE holds an unreverted save (${saved_identity:-unknown origin});" \
            "run $here/revert.sh first"
    fi
    echo "$profile: already applied (save $STATE_FILE kept); applying again"
else
    # Save everything before changing anything, and atomically: a half-written save must never
    # be what revert.sh finds.
    tmp=$(mktemp "$STATE_FILE.XXXXXX")
    trap 'rm -f "$tmp"' EXIT
    {
        echo "# switchboard-tuning save: $identity"
        echo "# saved $(date -u +%Y-%m-%dT%H:%M:%SZ) by ${0##*/}; restore with $here/revert.sh"
        for key in "${keys[@]}"; do
            if key_exists "$key"; then
                printf '%s=%s\n' "$key" "$(current_value "$key")"
            fi
        done
    } >"$tmp"
    mv "$tmp" "$STATE_FILE"
    trap - EXIT
    echo "$profile: saved the current values to $STATE_FILE"
fi

failed=0
for i in "${!keys[@]}"; do
    if ! key_exists "${keys[$i]}"; then
        printf '  skip    %s: not in this kernel (module not loaded?)\n' "${keys[$i]}"
        continue
    fi
    write_key "${keys[$i]}" "${values[$i]}" || failed=$((failed + 1))
done
if [[ $failed -gt 0 ]]; then
    die "$failed key(s) could not be written (above); the others are set. $here/revert.sh" \
        "restores all saved values"
fi
echo "applied; revert with $here/revert.sh"
