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
