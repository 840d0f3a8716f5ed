"""Issue 5 end to end: irods-ingestd under a real systemd (PID 1 in systemd-nspawn).

In one boot of the cached Debian 12 rootfs, ``tests/e2e/scripts/service_test.sh`` installs the
project and its units as packaging/systemd/README.md describes, starts Redis (on a port chosen here)
and, unless a real iRODS server is configured, the iRODS test server, runs
``systemctl start irods-ingestd.target`` and checks, in order:

* files dropped into a landing zone arrive in iRODS with the same bytes and checksums, and nothing else
  (no temporary object) is left in the zone's collection;
* ``systemctl show -p StatusText`` reports them;
* ``journalctl MESSAGE_ID=<FILE_INGESTED>`` lists each one with its INGEST_* / IRODS_PATH fields;
* ``systemctl reload`` (SIGHUP) picks up a new zone without a restart;
* a daemon whose main loop hangs (``INGESTD_TEST_HANG_FILE``) is killed by the watchdog and
  restarted;
* ``systemctl stop irods-ingestd.target`` during a long ingest lets the job finish
  (``KillMode=mixed``): the job was running when the stop was sent, its file is ingested after it,
  and the worker that ran it became inactive only after that. The ingest is made long by a delay
  fault on the test server, and by size (1.5 GiB) on a real server.

Against a real server (the default when one is configured) the container shares the host's network
namespace, so that the daemon reaches the server on the host; every run ingests into a collection of
its own, removed at the end (``e2e_irods``).
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e import nspawn
from tests.e2e.conftest import E2eIrods

HERE = Path(__file__).parent


def test_service_under_systemd(e2e_rootfs: Path, e2e_wheels: Path, run_dir: Path, e2e_irods: E2eIrods) -> None:
    script = (HERE / "scripts" / "service_test.sh").read_text()
    e2e_irods.write(run_dir)
    result = nspawn.boot(e2e_rootfs, script, timeout=600, wheels=e2e_wheels, run_dir=run_dir,
                         private_network=e2e_irods.real is None)
    print(f"\niRODS server: {e2e_irods.kind}")
    steps = (result.out / "steps").read_text() if (result.out / "steps").exists() else "(no steps)"
    print(f"\nboot + scenario + poweroff: {result.seconds:.1f}s\nsteps (seconds since start):\n{steps}")
    for name in ("status_text", "journal_ingested.txt", "watchdog.txt", "stop.txt"):
        f = result.out / name
        if f.exists():
            print(f"--- {name} ---\n{f.read_text()}")
    failure = (result.out / "failure").read_text() if (result.out / "failure").exists() else ""
    status = (result.out / "status.txt").read_text() if (result.out / "status.txt").exists() else ""
    assert result.returncode == 0, f"{failure}\n{status}\n{result.explain()}"
    assert (result.out / "result").read_text() == "ok\n"
    assert "ingested 6" in (result.out / "status_text").read_text()
