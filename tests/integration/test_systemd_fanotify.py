"""The fanotify drop-in (packaging/systemd/fanotify.conf.example) on the daemon's unit: `systemd-analyze
verify` stays silent, the service gets CAP_SYS_ADMIN and fanotify's system calls and nothing else, and its
exposure stays within the units' limit. No running systemd needed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "packaging" / "systemd"
MAX_EXPOSURE = 2.0  # as tests/integration/test_systemd_units.py

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze missing (apt-get install systemd)"
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch root with the daemon's unit, the drop-in installed as the example says, stub binaries."""
    root = tmp_path_factory.mktemp("fanotify-root")
    system = root / "etc/systemd/system"
    (system / "irods-ingestd.service.d").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    text = (UNITS / "irods-ingestd.service").read_text()
    (system / "irods-ingestd.service").write_text(text)
    shutil.copy(UNITS / "fanotify.conf.example", system / "irods-ingestd.service.d" / "fanotify.conf")
    for exe in set(re.findall(r"^Exec\w+=[-@:+!]*(/\S+)", text, re.M)):
        stub = root / exe.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return root


def test_the_drop_in_says_where_it_goes_and_what_it_grants() -> None:
    text = (UNITS / "fanotify.conf.example").read_text()
    assert "/etc/systemd/system/irods-ingestd.service.d/fanotify.conf" in text
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert settings == ["[Service]", "CapabilityBoundingSet=CAP_SYS_ADMIN", "AmbientCapabilities=CAP_SYS_ADMIN",
                        "SystemCallFilter=fanotify_init fanotify_mark"]


def test_verify_is_silent_with_the_drop_in(root: Path) -> None:
    proc = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "irods-ingestd.service"],
                          capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == "", proc.stderr + proc.stdout


def test_exposure_with_the_drop_in(root: Path) -> None:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={root}",
                           "irods-ingestd.service"], capture_output=True, text=True, cwd=root)
    out = proc.stdout + proc.stderr
    flagged = [line for line in out.splitlines() if "✗" in line]
    assert any("CAP_SYS_ADMIN" in line for line in flagged), "the drop-in was not applied"
    assert any("fanotify_init is allowed" in line for line in flagged), "fanotify_init is still filtered"
    assert not any("CAP_DAC" in line for line in flagged)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert m, out
    print(f"\nirods-ingestd.service + fanotify.conf: exposure {m.group(1)}")
    assert float(m.group(1)) <= MAX_EXPOSURE
