"""Boot a real systemd as PID 1 in a container and run one test unit in it.

``boot()`` starts ``systemd-nspawn -b`` on a cached rootfs (see :mod:`tests.e2e.rootfs`) with
``--volatile=overlay`` (everything written during the boot lands in a tmpfs and is gone afterwards,
so the cached tree stays clean), the checkout bind-mounted read-only at ``/src``, and a per-run
directory at ``/e2e`` (the test script, the project's wheel, and ``/e2e/out`` for results).

By default the container has a private network (only its own loopback: what listens in it never
meets the host's). ``private_network=False`` keeps the host's network namespace instead, so that
``127.0.0.1`` in the container is the host's (a real iRODS server running on the host); what the
container then starts must listen on ports the caller chose free.

The test is a unit, ``e2e-test.service``, pulled into the boot with ``systemd.wants=``. It runs the
script with ``SuccessAction=exit-force``/``FailureAction=exit-force``, so the script's exit status
becomes PID 1's and so nspawn's exit code. Its ``ExecStopPost=`` saves the whole boot's journal
(``/e2e/out/journal.txt`` and the export format in ``journal.export``) before the container goes
away, whatever happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e import rootfs

TEST_UNIT = """\
[Unit]
Description=irods-ingestd end-to-end test
SuccessAction=exit-force
FailureAction=exit-force
After=basic.target

[Service]
Type=exec
ExecStart=/bin/bash -eu -o pipefail /e2e/test.sh
ExecStopPost=/bin/sh -c 'journalctl -b --no-pager -o short-monotonic > /e2e/out/journal.txt 2>&1; \
journalctl -b --no-pager -o export > /e2e/out/journal.export 2>/dev/null; true'
WorkingDirectory=/src
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
Environment=PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
"""


@dataclass
class BootResult:
    returncode: int | None  # None: timed out
    console: str
    journal: str
    out: Path
    seconds: float
    command: list[str] = field(default_factory=list)

    def explain(self, tail: int = 150) -> str:
        """What to print when a test fails: the console and the end of the journal."""
        journal = "\n".join(self.journal.splitlines()[-tail:])
        return (
            f"nspawn exit code {self.returncode} after {self.seconds:.1f}s\n"
            f"--- console ---\n{self.console[-20000:]}\n--- journal (last {tail} lines) ---\n{journal}"
        )


def can_nspawn() -> str | None:
    """None if this machine can boot containers, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "systemd-nspawn needs root (run the e2e tests as root, as CI does)"
    for tool in ("systemd-nspawn", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/deps.sh installs it)"
    return None


def boot(
    root: Path,
    script: str,
    *,
    timeout: float = 300,
    wheels: Path | None = None,
    files: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    run_dir: Path | None = None,
    private_network: bool = True,
) -> BootResult:
    """Boot ``root``, run ``script`` (bash, ``set -eu -o pipefail``) as the test unit, return the result.

    ``wheels``: a directory bound at ``/e2e/wheels``. ``files``: extra files written into the run
    directory (``/e2e/<name>``). ``run_dir``: the run directory (default: a new temporary one); it is
    left in place for the caller to inspect (``result.out``) and remove. ``private_network=False``:
    the host's network namespace (see the module's docstring).
    """
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix="ingestd-e2e-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "out"
    out.mkdir(exist_ok=True)
    os.chmod(run_dir, 0o755)
    os.chmod(out, 0o777)
    (run_dir / "test.sh").write_text(script)
    (run_dir / "e2e-test.service").write_text(TEST_UNIT)
    for name, text in (files or {}).items():
        path = run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    name = "ingestd-e2e-" + uuid.uuid4().hex[:8]
    cmd = [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--directory={root}",
        f"--machine={name}",
        "--volatile=overlay",
        *(["--private-network"] if private_network else []),
        "--console=pipe",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        f"--bind-ro={rootfs.REPO}:/src",
        f"--bind={run_dir}:/e2e",
        f"--bind-ro={run_dir / 'e2e-test.service'}:/etc/systemd/system/e2e-test.service",
    ]
    if wheels is not None:
        cmd.append(f"--bind-ro={wheels}:/e2e/wheels")
    cmd += extra_args or []
    cmd += ["--", "systemd.wants=e2e-test.service", "systemd.show_status=false"]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    returncode: int | None
    try:
        console_b, _ = proc.communicate(timeout=timeout)
        returncode = proc.returncode
    except subprocess.TimeoutExpired:
        # SIGTERM asks nspawn to power the container off; SIGKILL if that hangs too.
        proc.send_signal(signal.SIGTERM)
        try:
            console_b, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            console_b, _ = proc.communicate()
        returncode = None
    seconds = time.monotonic() - t0
    journal_file = out / "journal.txt"
    journal = journal_file.read_text(errors="replace") if journal_file.exists() else "(no journal saved)"
    result = BootResult(
        returncode=returncode,
        console=console_b.decode(errors="replace"),
        journal=journal,
        out=out,
        seconds=seconds,
        command=cmd,
    )
    network = "private network" if private_network else "host network"
    print(f"[nspawn] {name}: exit {returncode} in {seconds:.1f}s ({network}), run directory {run_dir}",
          file=sys.stderr)
    return result
