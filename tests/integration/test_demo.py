"""`make demo` as a user runs it (in --once form): files dropped in arrive in iRODS with checksums."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_shows_files_arriving_in_irods(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tests.demo", "--once", "--dir", str(tmp_path / "demo")],
                       cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr + (tmp_path / "demo" / "ingestd.log").read_text()
    assert "MISSING" not in r.stdout
    assert r.stdout.count(" sha2:") == 4
    assert "ingested 4" in r.stdout and "failed 0" in r.stdout
    # the command it tells the user to type works as printed, from any directory
    hint = next(line for line in r.stdout.splitlines() if line.startswith("Drop more files"))
    command = hint.split("`")[1]
    assert command.split()[0].startswith("/"), command  # not a bare name that may not be on the PATH
    h = subprocess.run([*command.split(), "--help"], cwd="/", capture_output=True, text=True, timeout=60)
    assert h.returncode == 0 and "usage: irods-ingestd status" in h.stdout, h.stdout + h.stderr
