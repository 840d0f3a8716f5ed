"""Issue 11, configuration cases: aliasing through symlinks (case 5), settle = 0, deep collections.

The configs are checked the way an administrator meets them: `check-config`, `run` at start, and a
SIGHUP reload of a running daemon (which must refuse the new config and keep the old one).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon_harness import queued, wait_for

ROOT = Path(__file__).resolve().parents[2]


def zone_toml(name: str, path: Path | str, collection: str, **extra: str) -> str:
    body = f'[[zone]]\nname = "{name}"\npath = "{path}"\ncollection = "{collection}"\nsettle = "0.3s"\n'
    return body + "".join(f'{k} = "{v}"\n' for k, v in extra.items())


def write_config(tmp: Path, redis_url: str, zones: str, env: Path | None = None, pw: Path | None = None) -> Path:
    if env is None:
        env = tmp / "env.json"
        env.write_text("{}")
    irods = f'[irods]\nenvironment_file = "{env}"\n' + (f'password_file = "{pw}"\n' if pw else "")
    cfg = tmp / "config.toml"
    cfg.write_text(f'[redis]\nurl = "{redis_url}"\n{irods}[queue]\nname = "ingest-test"\n{zones}')
    cfg.chmod(0o600)
    return cfg


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def aliasing_configs(tmp: Path) -> dict[str, tuple[str, str]]:
    """name → (zones TOML, expected message): configs whose paths differ as text but not on disk."""
    a, b = tmp / "a", tmp / "b"
    (a / "sub").mkdir(parents=True)
    b.mkdir()
    (tmp / "link-into-a").symlink_to(a / "sub")
    (tmp / "moved").symlink_to(a / "done")  # move_to through a symlink back into its own zone
    coll = "/tempZone/home/rods"
    return {
        "zone path is a symlink into another zone": (
            zone_toml("a", a, f"{coll}/a") + zone_toml("b", tmp / "link-into-a", f"{coll}/b"),
            "zone 'a' and zone 'b': their paths overlap"),
        "move_to inside another zone": (
            zone_toml("a", a, f"{coll}/a", after="move", move_to=str(b / "done")) + zone_toml("b", b, f"{coll}/b"),
            "zone 'a'.move_to: "),
        "move_to into its own zone through a symlink": (
            zone_toml("a", a, f"{coll}/a", after="move", move_to=str(tmp / "moved")),
            "zone 'a'.move_to: "),
    }


CASES = ["zone path is a symlink into another zone", "move_to inside another zone",
         "move_to into its own zone through a symlink"]


@pytest.mark.parametrize("case", CASES)
def test_check_config_and_run_refuse_aliased_paths(tmp_path, redis_server, redis_conn, case):
    zones, expected = aliasing_configs(tmp_path)[case]
    cfg = write_config(tmp_path, redis_server.url, zones)
    r = cli(cfg, "check-config", "--offline")
    assert r.returncode != 0, f"check-config accepted an aliasing config: {r.stdout}"
    assert expected in r.stderr, r.stderr
    assert str(tmp_path) in r.stderr  # the real path is named
    r = cli(cfg, "run")  # the daemon refuses it at start too
    assert r.returncode == 2, r.stderr
    assert expected in r.stderr


def test_move_to_into_its_own_zone_by_a_parent_symlink(tmp_path, redis_server, redis_conn):
    """The zone's own path is the symlink: move_to is written with the real name."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "zone").symlink_to(real)
    zones = zone_toml("a", tmp_path / "zone", "/tempZone/home/rods/a", after="move", move_to=str(real / "done"))
    r = cli(write_config(tmp_path, redis_server.url, zones), "check-config", "--offline")
    assert r.returncode != 0 and "zone 'a'.move_to: " in r.stderr, r.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_a_bind_mount_of_another_zone_is_refused(tmp_path, redis_server):
    """Same directory, other real path: found by device and inode (in a private mount namespace)."""
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "mnt").mkdir()
    zones = zone_toml("a", tmp_path / "a", "/tempZone/home/rods/a") + \
        zone_toml("b", tmp_path / "mnt" / "sub", "/tempZone/home/rods/b")
    cfg = write_config(tmp_path, redis_server.url, zones)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        f'mount --bind "{tmp_path / "a"}" "{tmp_path / "mnt"}" && exec "$@"', "sh",
                        sys.executable, "-m", "irods_ingestd", "-c", str(cfg), "check-config", "--offline"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "zone 'a' and zone 'b': their paths overlap" in r.stderr


def test_reload_refuses_an_aliasing_config_and_keeps_the_old_one(tmp_path, redis_server, redis_conn):
    zones, expected = aliasing_configs(tmp_path)["zone path is a symlink into another zone"]
    good = zone_toml("a", tmp_path / "a", "/tempZone/home/rods/a")
    cfg = write_config(tmp_path, redis_server.url, good)
    log = open(tmp_path / "daemon.log", "w")
    p = subprocess.Popen([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg), "run"],
                         stderr=log, cwd=ROOT)
    try:
        assert wait_for(lambda: "running with 1 zones" in (tmp_path / "daemon.log").read_text(), timeout=15)
        write_config(tmp_path, redis_server.url, zones)
        p.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload refused" in (tmp_path / "daemon.log").read_text(), timeout=10), \
            (tmp_path / "daemon.log").read_text()
        (tmp_path / "a" / "sub" / "after-reload.txt").write_text("x")  # zone a still runs, b was not added
        assert wait_for(lambda: queued(redis_conn), timeout=10)
        time.sleep(1.0)
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
        log.close()
    text = (tmp_path / "daemon.log").read_text()
    assert expected in text
    assert "configuration reloaded" not in text
    assert [(z, rel) for z, rel, *_ in queued(redis_conn)] == [("a", "sub/after-reload.txt")]


@pytest.mark.parametrize("settle", ["0", "0s", "0ms", "50ms"])
def test_settle_below_the_minimum_is_refused(tmp_path, redis_server, settle):
    (tmp_path / "a").mkdir()
    zones = zone_toml("a", tmp_path / "a", "/tempZone/home/rods/a").replace('settle = "0.3s"', f'settle = "{settle}"')
    r = cli(write_config(tmp_path, redis_server.url, zones), "check-config", "--offline")
    assert r.returncode != 0
    assert "zone 'a'.settle: must be at least 0.1s" in r.stderr, r.stderr


def test_check_config_accepts_a_collection_two_levels_below_an_existing_one(tmp_path, redis_server, irods):
    """Workers create the missing parents; only a collection with no existing ancestor is refused."""
    env = irods.write_env_file(tmp_path / "irods_environment.json")
    pw = tmp_path / "pw"
    pw.write_text(irods.password)
    pw.chmod(0o600)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    deep = f"{irods.home}/ingest-{os.getpid()}-{time.monotonic_ns()}/level1/level2"
    zones = zone_toml("a", tmp_path / "a", deep)
    r = cli(write_config(tmp_path, redis_server.url, zones, env, pw), "check-config")
    assert r.returncode == 0, r.stderr
    assert "OK (1 zones: a)" in r.stdout
    zones += zone_toml("b", tmp_path / "b", "/noSuchZone/home/x/y")
    r = cli(write_config(tmp_path, redis_server.url, zones, env, pw), "check-config")
    assert r.returncode == 1
    assert "zone 'b': no part of /noSuchZone/home/x/y exists in iRODS" in r.stderr, r.stderr
