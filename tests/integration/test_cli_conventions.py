"""The CLI follows the conventions: global options before or after the command, --version, useful
--help, documented exit codes (0 ok, 1 failures present, 2 bad usage or configuration)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from irods_ingestd import __version__
from irods_ingestd.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "irods_ingestd", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def config(tmp: Path, redis_url: str) -> Path:
    (tmp / "zone").mkdir()
    env = tmp / "env.json"
    env.write_text("{}")
    cfg = tmp / "config.toml"
    cfg.write_text(f'[redis]\nurl = "{redis_url}"\n[irods]\nenvironment_file = "{env}"\n'
                   f'[[zone]]\nname = "one"\npath = "{tmp / "zone"}"\ncollection = "/tempZone/home/rods/one"\n')
    cfg.chmod(0o600)
    return cfg


def test_global_options_before_or_after_the_command(tmp_path, redis_server, redis_conn) -> None:  # type: ignore[no-untyped-def]
    cfg = config(tmp_path, redis_server.url)
    before = run("-c", str(cfg), "--log-target", "stderr", "status", "--json")
    after = run("status", "--json", "--config", str(cfg), "--log-target", "stderr")
    mixed = run("--log-target", "stderr", "status", "-c", str(cfg), "--json")
    for r in (before, after, mixed):
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["zones"]["one"]["queued"] == 0
    assert run("check-config", "--offline", "-c", str(cfg)).returncode == 0


def test_version_and_help() -> None:
    v = run("--version")
    assert v.returncode == 0 and v.stdout.strip() == f"irods-ingestd {__version__}"
    h = run("--help")
    assert h.returncode == 0
    for command in ("run", "worker", "check-config", "scan", "status", "retry"):
        assert command in h.stdout
        sub = run(command, "--help")
        assert sub.returncode == 0 and f"usage: irods-ingestd {command}" in sub.stdout, sub.stdout
        assert "--config" in sub.stdout and "Exit codes" in sub.stdout


def test_exit_codes(tmp_path, redis_server, redis_conn) -> None:  # type: ignore[no-untyped-def]
    assert run("no-such-command").returncode == 2  # bad usage
    bad = tmp_path / "bad.toml"
    bad.write_text("[[zone]]\nname = 'x'\n")
    assert run("-c", str(bad), "check-config", "--offline").returncode == 2  # bad configuration
    cfg = config(tmp_path, redis_server.url)
    assert run("-c", str(cfg), "status").returncode == 0  # nothing failed
    Ledger(redis_conn).mark_failed("one", "broken.dat", 3, 4, "conflict: someone else's object", "conflict")
    r = run("-c", str(cfg), "status")
    assert r.returncode == 1, r.stdout  # failures present: listed, and the exit code says so
    assert "failed: broken.dat: conflict" in r.stdout
