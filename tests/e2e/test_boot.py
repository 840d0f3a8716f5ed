"""Smoke test of the e2e plumbing: boot systemd in a container, start Redis, exit with a status."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e import nspawn

SCRIPT = r"""
state=$(systemctl is-system-running --wait || true)
echo "system state: $state"
if [ "$state" != running ]; then systemctl --failed --no-pager; exit 10; fi
test "$(cat /proc/1/comm)" = systemd
systemctl start redis-server.service
test "$(redis-cli ping)" = PONG
echo ok > /e2e/out/result
"""


def test_boot_and_redis(e2e_rootfs: Path, run_dir: Path) -> None:
    result = nspawn.boot(e2e_rootfs, SCRIPT, timeout=180, run_dir=run_dir)
    print(f"boot+test+poweroff: {result.seconds:.1f}s")
    assert result.returncode == 0, result.explain()
    assert (result.out / "result").read_text() == "ok\n"
    assert "Started redis-server.service" in result.journal or "redis" in result.journal


def test_failure_propagates_exit_code(e2e_rootfs: Path, run_dir: Path) -> None:
    result = nspawn.boot(e2e_rootfs, "exit 7\n", timeout=120, run_dir=run_dir)
    assert result.returncode == 7, result.explain()


# The fallbacks used when systemd-python is absent, against the real journald and PID 1: the
# built-in native-protocol sender (including the memfd path for a large entry) and sd_notify.
FALLBACK_SCRIPT = r"""
export PYTHONPATH=/src PYTHONDONTWRITEBYTECODE=1
py=/opt/irods-ingestd/bin/python
$py - <<'PY'
import logging
from irods_ingestd import logsetup
from irods_ingestd.messages import MessageId
logsetup._sendv = None
h = logsetup.JournalHandler()
assert h._native is not None
log = logging.getLogger("irods_ingestd.e2e")
log.addHandler(h)
log.warning("native %s", "small", extra={"fields": {"ingest_zone": "zz", "INGEST_BYTES": 5},
                                          "message_id": MessageId.FILE_SKIPPED})
log.warning("native big", extra={"fields": {"INGEST_ZONE": "zz", "BIG": "x" * 300000},
                                  "message_id": MessageId.FILE_SKIPPED})
PY
sleep 0.5
journalctl --all -o json MESSAGE_ID=0cc2dbaddec145eeaefd9e2aa436b2f3 INGEST_ZONE=zz > /e2e/out/native.json
test "$(wc -l < /e2e/out/native.json)" = 2

# sd_notify fallback: a Type=notify unit only becomes active once READY=1 arrives.
cat > /tmp/notify.py <<'PY'
import time
from irods_ingestd import sdnotify
sdnotify._sd_notify = None
n = sdnotify.Notifier()
assert n.enabled and n.watchdog_interval() == 2.0, n.watchdog_interval()
n.ready("fallback ready")
time.sleep(30)
PY
systemd-run --unit=notify-fallback -p Type=notify -p NotifyAccess=main -p TimeoutStartSec=10 \
    -p WatchdogSec=4 --setenv=PYTHONPATH=/src $py /tmp/notify.py
test "$(systemctl show -p StatusText --value notify-fallback.service)" = "fallback ready"
systemctl stop notify-fallback.service
echo ok > /e2e/out/result
"""


def test_fallbacks_against_real_journald_and_pid1(e2e_rootfs: Path, run_dir: Path) -> None:
    result = nspawn.boot(e2e_rootfs, FALLBACK_SCRIPT, timeout=180, run_dir=run_dir)
    assert result.returncode == 0, result.explain()

    entries = [json.loads(line) for line in (result.out / "native.json").read_text().splitlines()]
    small = next(e for e in entries if e["MESSAGE"] == "native small")
    assert small["INGEST_ZONE"] == "zz" and small["INGEST_BYTES"] == "5"
    assert small["SYSLOG_IDENTIFIER"] == "irods-ingestd" and small["PRIORITY"] == "4"
    big = next(e for e in entries if e["MESSAGE"] == "native big")
    assert big["BIG"] == "x" * 300000
