#!/bin/bash
# The issue-5 scenario, run by e2e-test.service inside the booted container (systemd is PID 1).
# Each step is appended to /e2e/out/steps; a failure writes /e2e/out/failure and exits non-zero,
# which becomes the container's (and so nspawn's) exit code.
# The host describes the iRODS server in /e2e (tests/e2e/conftest.py, E2eIrods): E2E_IRODS=real is a
# real server reached over the host's network (the container shares it), E2E_IRODS=standin the iRODS
# test server, started here inside the container's private network.
set -euo pipefail
set -a
# shellcheck source=/dev/null
. /e2e/e2e.env
set +a

FILE_INGESTED=78f797c2d88243d98bc497b0d8892609
RELOAD=867e0bb0c7034b83b582d568a3cb8b13
out=/e2e/out
svc=irods-ingestd.service
workers=(irods-ingestd-worker@1.service irods-ingestd-worker@2.service irods-ingestd-worker@3.service
         irods-ingestd-worker@4.service)

step() { echo "== $* ($SECONDS s)"; echo "$SECONDS $*" >> "$out/steps"; }
fail() {
    echo "FAIL: $*" | tee "$out/failure"
    systemctl status --no-pager --full "irods-ingestd*" irods-test.service > "$out/status.txt" 2>&1 || true
    exit 1
}
rcli() { redis-cli -p "$E2E_REDIS_PORT" "$@"; }
check() { PYTHONPATH=/src /opt/irods-ingestd/bin/python /src/tests/e2e/scripts/e2e_check.py "$@"; }
wait_for() {  # wait_for SECONDS COMMAND...: retry COMMAND until it succeeds or time runs out
    local end=$((SECONDS + $1)); shift
    until "$@"; do [ "$SECONDS" -lt "$end" ] || return 1; sleep 0.3; done
}
prop() { systemctl show -p "$2" --value "$1"; }
drop() {  # drop ZONE NAME BYTES: write elsewhere, then move in (complete on arrival)
    mkdir -p /srv/landing/.staging "$(dirname "/srv/landing/$1/$2")"
    head -c "$3" /dev/urandom > "/srv/landing/.staging/$(basename "$2")"
    mv "/srv/landing/.staging/$(basename "$2")" "/srv/landing/$1/$2"
}
status_has() { prop "$svc" StatusText | grep -q "$1"; }

step boot
systemctl is-system-running --wait > /dev/null || true

step install
bash /src/tests/e2e/scripts/install.sh
irods-ingestd check-config --offline || fail "check-config --offline"

step redis-and-irods
systemctl start redis-server.service
wait_for 30 bash -c '[ "$(redis-cli -p "$E2E_REDIS_PORT" ping 2>/dev/null)" = PONG ]' \
    || fail "Redis does not answer on port $E2E_REDIS_PORT"
if [ "$E2E_IRODS" = standin ]; then
    mkdir -p /var/lib/irods-test
    systemd-run --unit=irods-test --property=WorkingDirectory=/src --setenv=PYTHONDONTWRITEBYTECODE=1 \
        /opt/irods-ingestd/bin/python -m tests.irods_server --port "$E2E_IRODS_PORT" --control-port 1248 \
        --vault /var/lib/irods-test/vault --catalog /var/lib/irods-test/catalog.sqlite \
        --user "$E2E_IRODS_USER:$(cat /e2e/irods-password)"
fi
wait_for 30 bash -c "</dev/tcp/$E2E_IRODS_HOST/$E2E_IRODS_PORT" 2>/dev/null \
    || fail "no iRODS ($E2E_IRODS) listens on $E2E_IRODS_HOST:$E2E_IRODS_PORT"
# check-config without --offline: Redis and iRODS answer (the password as the units get it)
systemd-run --quiet --wait --pipe -p LoadCredential=irods-password:/etc/irods-ingestd/irods-password \
    irods-ingestd check-config || fail "check-config: Redis or iRODS do not answer"

step start-target
systemctl start irods-ingestd.target || fail "systemctl start irods-ingestd.target"
wait_for 30 systemctl is-active -q "$svc" "${workers[@]}" || fail "not all units active"
[ "$(prop "$svc" StatusText)" != "" ] || fail "no StatusText after READY=1"
echo "after start: $(prop "$svc" StatusText)"

step ingest
for i in 1 2 3 4 5; do drop z1 "f$i.dat" $((i * 1000)); done
drop z1 sub/dir/f6.dat 777
check wait-objects z1 6 || fail "z1's files did not arrive in iRODS"

step status-text
wait_for 20 status_has "ingested 6" || fail "StatusText says: $(prop "$svc" StatusText)"
prop "$svc" StatusText | tee "$out/status_text"

step journal
check journal-ingested z1 6 | tee "$out/journal_ingested.txt" || fail "journal lacks FILE_INGESTED entries"
journalctl -u 'irods-ingestd*' MESSAGE_ID=$FILE_INGESTED INGEST_ZONE=z1 --since today -o verbose --no-pager \
    > "$out/journal_verbose.txt"

step reload
pid=$(prop "$svc" MainPID)
/src/tests/e2e/scripts/write-config.sh z1 z2
systemctl reload "$svc" || fail "systemctl reload"
wait_for 20 bash -c "journalctl -q -u $svc MESSAGE_ID=$RELOAD | grep -q ." || fail "no RELOAD message"
[ "$(prop "$svc" MainPID)" = "$pid" ] || fail "reload restarted the daemon"
drop z2 g1.dat 2000
drop z2 g2.dat 3000
check wait-objects z2 2 || fail "the zone added by reload was not ingested"

step watchdog
pid=$(prop "$svc" MainPID)
restarts=$(prop "$svc" NRestarts)
touch /run/ingestd-e2e-hang
wait_for 40 bash -c "[ \"\$(systemctl show -p Result --value $svc)\" = watchdog ]" \
    || fail "the hung daemon was not killed by the watchdog (Result=$(prop "$svc" Result))"
rm -f /run/ingestd-e2e-hang
wait_for 40 bash -c "systemctl is-active -q $svc && [ \"\$(systemctl show -p MainPID --value $svc)\" != $pid ]" \
    || fail "the daemon was not restarted after the watchdog"
[ "$(prop "$svc" NRestarts)" -gt "$restarts" ] || fail "NRestarts did not grow"
journalctl -u "$svc" --no-pager | grep -i "watchdog timeout" | tee "$out/watchdog.txt" || fail "no watchdog line"
drop z1 after-watchdog.dat 1234
check wait-objects z1 7 || fail "nothing ingested after the watchdog restart"

step stop-during-long-ingest
# The ingest must still be running when the stop arrives: on the test server every call is delayed;
# a real server cannot be slowed down, so there the file is large ($E2E_BIG_BYTES, in the tmpfs).
if [ "$E2E_IRODS" = standin ]; then check control delay '{"seconds": 1.0}'; fi
drop z2 big.dat "$E2E_BIG_BYTES"
# A job is running once RQ lists it in a started-job registry (rq:wip:<queue>).
job_running() {
    local k
    for k in $(rcli --scan --pattern 'rq:wip:*'); do [ "$(rcli zcard "$k")" -gt 0 ] && return 0; done
    return 1
}
big_done() { journalctl -q -o cat MESSAGE_ID=$FILE_INGESTED INGEST_PATH=/srv/landing/z2/big.dat | grep -q .; }
started() { job_running || big_done; }
wait_for 60 started || fail "the long ingest never started"
! big_done || fail "big.dat ($E2E_BIG_BYTES bytes) was ingested before its job was seen running: not a long ingest"
sleep 0.5
t0=$SECONDS
stop_usec=$(date +%s%6N)
# `systemctl stop` on the target returns once the target's own job is done; the services it stops
# through PartOf= wind down on their own: a busy worker finishes its job first (KillMode=mixed).
systemctl stop irods-ingestd.target || fail "systemctl stop irods-ingestd.target"
echo "big.dat: $E2E_BIG_BYTES bytes; systemctl stop returned after $((SECONDS - t0)) s" | tee "$out/stop.txt"
all_inactive() {
    for u in "$svc" "${workers[@]}"; do [ "$(prop "$u" ActiveState)" = inactive ] || return 1; done
}
wait_for 120 all_inactive || fail "units still not inactive 120 s after stop"
echo "all units inactive after $((SECONDS - t0)) s" | tee -a "$out/stop.txt"
if [ "$E2E_IRODS" = standin ]; then check control delay '{"seconds": 0}'; fi
for w in "${workers[@]}"; do
    [ "$(prop "$w" Result)" = success ] || fail "$w stopped with Result=$(prop "$w" Result)"
done
check wait-objects z2 3 5 || fail "the ingest running at stop did not finish"
# ... and it really was running at the stop: its FILE_INGESTED entry comes after the stop request,
# and the worker that logged it became inactive only after that.
check ingested-after /srv/landing/z2/big.dat "$stop_usec" | tee -a "$out/stop.txt" \
    || fail "big.dat was not ingested between the stop request and its worker's end (the test missed the running job)"
if journalctl --no-pager -u 'irods-ingestd-worker@*' | grep -q "terminated unexpectedly"; then
    fail "a work-horse was killed by the stop"
fi

step done
echo ok > "$out/result"
