#!/bin/bash
# Check irods-ingestd's systemd units without a running systemd:
#   * systemd-analyze verify of every unit must print nothing (it exits 0 even for unknown keys,
#     so stderr is what counts). Verify also wants every Exec*= binary to exist, so it runs
#     against a scratch root holding the units, the system's unit directory and stub binaries.
#   * systemd-analyze security --offline=yes: every service's exposure must be <= 2.0 (MAX_EXPOSURE).
#   * sysusers.d and tmpfiles.d entries apply cleanly to the scratch root.
# Prints one line per unit with its score; exits non-zero on any problem.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
max=${MAX_EXPOSURE:-2.0}
units=(irods-ingestd.service irods-ingestd-worker@.service irods-ingestd-walk@.service irods-ingestd.target)
services=(irods-ingestd.service irods-ingestd-worker@.service irods-ingestd-walk@.service)

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
for u in "${units[@]}"; do cp "$here/$u" "$root/etc/systemd/system/"; done
# Stub every absolute executable the units name (ExecStart=/usr/bin/irods-ingestd run, /bin/kill ...).
sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\(\/[^ ]*\).*/\1/p' "${units[@]/#/$here/}" | sort -u | while read -r exe; do
    mkdir -p "$root$(dirname "$exe")"
    printf '#!/bin/sh\nexit 0\n' > "$root$exe"
    chmod 755 "$root$exe"
done

fail=0
verify_units=()
for u in "${units[@]}"; do verify_units+=("${u/@./@1.}"); done
err=$(cd "$root" && systemd-analyze verify --root="$root" "${verify_units[@]}" 2>&1 >/dev/null) || true
if [ -n "$err" ]; then
    echo "systemd-analyze verify: FAILED"; echo "$err"; fail=1
else
    echo "systemd-analyze verify: ok (${verify_units[*]})"
fi

for s in "${services[@]}"; do
    out=$(systemd-analyze security --offline=yes "$here/$s" 2>&1) || true
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
    if [ -z "$score" ]; then
        echo "$s: no score"; echo "$out"; fail=1; continue
    fi
    if awk -v s="$score" -v m="$max" 'BEGIN { exit !(s > m) }'; then
        echo "$s: exposure $score > $max FAILED"; grep '✗' <<<"$out" || true; fail=1
    else
        echo "$s: exposure $score (<= $max) ok"
    fi
done

if command -v systemd-sysusers >/dev/null; then
    mkdir -p "$root/etc"; touch "$root/etc/passwd" "$root/etc/group" "$root/etc/shadow" "$root/etc/gshadow"
    if err=$(systemd-sysusers --root="$root" "$here/sysusers.d/irods-ingestd.conf" 2>&1) && \
       grep -q '^irods-ingestd:' "$root/etc/passwd"; then
        echo "sysusers.d/irods-ingestd.conf: ok"
    else
        echo "sysusers.d/irods-ingestd.conf: FAILED"; echo "$err"; fail=1
    fi
    if err=$(systemd-tmpfiles --root="$root" --create "$here/tmpfiles.d/irods-ingestd.conf" 2>&1) && \
       [ -d "$root/etc/irods-ingestd" ] && [ -z "$err" ]; then
        echo "tmpfiles.d/irods-ingestd.conf: ok"
    else
        echo "tmpfiles.d/irods-ingestd.conf: FAILED"; echo "$err"; fail=1
    fi
fi
exit $fail
