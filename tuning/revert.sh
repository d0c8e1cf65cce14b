#!/usr/bin/env bash
# Restores exactly the values tuning/apply.sh saved (in reverse order), verifies each, and
# removes the save. Without a save there is nothing to do: running it twice is harmless. If a
# value cannot be restored the save is kept, so the run can be repeated once the cause is fixed.
#   tuning/revert.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tuning/sysctl-state.sh
. "$here/sysctl-state.sh"

if [[ $# -ne 0 ]]; then
    echo "usage: ${0##*/}   (restores $STATE_FILE)" >&2
    exit 2
fi
if [[ ! -e $STATE_FILE ]]; then
    echo "nothing to revert: no save at $STATE_FILE"
    exit 0
fi
require_root "$@"

keys=()
values=()
while IFS= read -r line || [[ -n $line ]]; do
    [[ $line == \#* || -z $line ]] && continue
    [[ $line == *=* ]] || die "$STATE_FILE: not a key=value line: $line"
    keys+=("${line%%=*}")
    values+=("${line#*=}")
done <"$STATE_FILE"

echo "restoring ${#keys[@]} value(s) from $STATE_FILE"
failed=0
for ((i = ${#keys[@]} - 1; i >= 0; i--)); do
    key=${keys[$i]}
    if ! key_exists "$key"; then
        # Saved while present, gone now (module unloaded): its value went with it.
        printf '  skip    %s: no longer in this kernel\n' "$key"
        continue
    fi
    write_key "$key" "${values[$i]}" || failed=$((failed + 1))
done
if [[ $failed -gt 0 ]]; then
    die "$failed value(s) not restored (above); keeping $STATE_FILE for another try"
fi
rm -f "$STATE_FILE"
echo "reverted; removed $STATE_FILE"
