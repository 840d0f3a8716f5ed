"""Issue 5 end to end: irods-ingestd under a real systemd (PID 1 in systemd-nspawn).

In one boot of the cached Debian 12 rootfs, ``tests/e2e/scripts/service_test.sh`` installs the
project and its units as packaging/systemd/README.md describes, starts Redis and the iRODS test
server, runs ``systemctl start irods-ingestd.target`` and checks, in order:

* files dropped into a landing zone arrive in iRODS with the same bytes;
* ``systemctl show -p StatusText`` reports them;
* ``journalctl MESSAGE_ID=<FILE_INGESTED>`` lists each one with its INGEST_* / IRODS_PATH fields;
* ``systemctl reload`` (SIGHUP) picks up a new zone without a restart;
* a daemon whose main loop hangs (``INGESTD_TEST_HANG_FILE``) is killed by the watchdog and
  restarted;
* ``systemctl stop irods-ingestd.target`` during a long ingest lets the job finish
  (``KillMode=mixed``).
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e import nspawn

HERE = Path(__file__).parent


def test_service_under_systemd(e2e_rootfs: Path, e2e_wheels: Path, run_dir: Path) -> None:
    script = (HERE / "scripts" / "service_test.sh").read_text()
    result = nspawn.boot(e2e_rootfs, script, timeout=600, wheels=e2e_wheels, run_dir=run_dir)
    steps = (result.out / "steps").read_text() if (result.out / "steps").exists() else "(no steps)"
    print(f"\nboot + scenario + poweroff: {result.seconds:.1f}s\nsteps (seconds since start):\n{steps}")
    for name in ("status_text", "journal_ingested.txt", "watchdog.txt", "stop_seconds"):
        f = result.out / name
        if f.exists():
            print(f"--- {name} ---\n{f.read_text()}")
    failure = (result.out / "failure").read_text() if (result.out / "failure").exists() else ""
    status = (result.out / "status.txt").read_text() if (result.out / "status.txt").exists() else ""
    assert result.returncode == 0, f"{failure}\n{status}\n{result.explain()}"
    assert (result.out / "result").read_text() == "ok\n"
    assert "ingested 6" in (result.out / "status_text").read_text()
