"""The systemd units: `systemd-analyze verify` prints nothing, and `systemd-analyze security` rates
every service's exposure 2.0 or less. No running systemd needed (PID 1 is not systemd on CI)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "packaging" / "systemd"
SERVICES = ["irods-ingestd.service", "irods-ingestd-worker@.service"]
ALL_UNITS = [*SERVICES, "irods-ingestd.target"]
MAX_EXPOSURE = 2.0

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze missing (apt-get install systemd)"
)


def executables(unit_text: str) -> set[str]:
    """Absolute paths of the Exec*= commands (prefixes like -, @, +, ! stripped)."""
    out = set()
    for m in re.finditer(r"^Exec\w+=[-@:+!]*(/\S+)", unit_text, re.M):
        out.add(m.group(1))
    return out


@pytest.fixture(scope="module")
def verify_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch root: our units, the system's units (sysinit.target ...), stub Exec binaries.

    `systemd-analyze verify` insists that ExecStart= binaries exist; with --root it looks for them
    (and every unit) under the root, so the host needs no /usr/bin/irods-ingestd.
    """
    root = tmp_path_factory.mktemp("verify-root")
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for unit in ALL_UNITS:
        text = (UNITS / unit).read_text()
        (root / "etc/systemd/system" / unit).write_text(text)
        for exe in executables(text):
            stub = root / exe.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    return root


def test_units_reference_the_installed_binary() -> None:
    for unit in SERVICES:
        exes = executables((UNITS / unit).read_text())
        assert "/usr/bin/irods-ingestd" in exes, unit


@pytest.mark.parametrize("unit", ALL_UNITS)
def test_verify_is_silent(verify_root: Path, unit: str) -> None:
    name = unit.replace("@.", "@1.")
    proc = subprocess.run(
        ["systemd-analyze", "verify", f"--root={verify_root}", name],
        capture_output=True,
        text=True,
        cwd=verify_root,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    assert proc.stdout == "", proc.stdout


def test_verify_catches_problems(verify_root: Path, tmp_path: Path) -> None:
    """The check itself works: an unknown key and a missing binary show up on stderr."""
    bad = verify_root / "etc/systemd/system/ingestd-bad.service"
    bad.write_text("[Service]\nExecStart=/usr/bin/does-not-exist\nBogusKey=1\n")
    try:
        proc = subprocess.run(
            ["systemd-analyze", "verify", f"--root={verify_root}", "ingestd-bad.service"],
            capture_output=True,
            text=True,
            cwd=verify_root,
        )
    finally:
        bad.unlink()
    assert "BogusKey" in proc.stderr
    assert "does-not-exist" in proc.stderr


@pytest.mark.parametrize("unit", SERVICES)
def test_security_exposure(unit: str) -> None:
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNITS / unit)],
        capture_output=True,
        text=True,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout + proc.stderr)
    assert m, proc.stdout + proc.stderr
    score = float(m.group(1))
    print(f"\n{unit}: exposure {score}")
    assert score <= MAX_EXPOSURE, "\n".join(line for line in proc.stdout.splitlines() if "✗" in line)


def test_worker_stops_warm() -> None:
    text = (UNITS / "irods-ingestd-worker@.service").read_text()
    assert re.search(r"^KillMode=mixed$", text, re.M)
    assert re.search(r"^KillSignal=SIGTERM$", text, re.M)
    assert re.search(r"^ExecStart=/usr/bin/irods-ingestd worker --name %H-%i$", text, re.M)


def test_daemon_is_notify_with_watchdog() -> None:
    text = (UNITS / "irods-ingestd.service").read_text()
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStartPre=/usr/bin/irods-ingestd check-config --offline",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line


def test_target_groups_everything() -> None:
    target = (UNITS / "irods-ingestd.target").read_text()
    assert "irods-ingestd.service" in target and "irods-ingestd-worker@1.service" in target
    for unit in SERVICES:
        assert re.search(r"^PartOf=irods-ingestd.target$", (UNITS / unit).read_text(), re.M), unit


def test_check_units_script() -> None:
    proc = subprocess.run(["bash", str(UNITS / "check-units.sh")], capture_output=True, text=True)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "irods-ingestd.service: exposure" in proc.stdout
