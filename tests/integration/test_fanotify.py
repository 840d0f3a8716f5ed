"""The fanotify backend beyond the watcher contract (tests/integration/test_watcher_contract.py runs that
for it): strict filtering of a whole-filesystem mark, a zone root removed, several zones on one mark, the
capability check of `check-config`, the daemon's fallback to polling, and a fanotify zone ingesting into
the real iRODS.

Runs as root (here and in CI); skipped only where the kernel refuses fanotify_init or FAN_MARK_FILESYSTEM.
Without CAP_SYS_ADMIN is tried with `setpriv --bounding-set -sys_admin` (util-linux).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from irods_ingestd.watch.api import Change, Inbox, Kind
from irods_ingestd.watch.fanotify_sys import unavailable
from tests.daemon_harness import make_config
from tests.landing import server_readable
from tests.pipeline_harness import Pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fanotify_here(tmp_path: Path) -> None:
    why = unavailable(str(tmp_path))
    if why:
        pytest.skip(f"fanotify: {why}")


def make_watcher(tmp_path: Path, *names: str) -> tuple[Any, list[Any]]:
    from irods_ingestd.watch.fanotify import FanotifyWatcher

    zones = [{"name": n, "path": str(tmp_path / n), "collection": f"/tempZone/home/rods/{n}",
              "watcher": "fanotify"} for n in names]
    for n in names:
        (tmp_path / n).mkdir()
    cfg = make_config(tmp_path, "redis://unused", zones)
    w = FanotifyWatcher(Inbox())
    for z in cfg.zones:
        w.add_zone(z)
        assert w.watch_dir(z.name, "")
    return w, cfg.zones


def collect(w: Any, seconds: float = 0.5) -> list[Change]:
    out: list[Change] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        w.inbox.wait(0.05)
        out += w.changes()
    return out


def test_events_outside_the_zones_are_dropped(tmp_path: Path) -> None:
    w, _ = make_watcher(tmp_path, "z")
    try:
        (tmp_path / "z" / "unwalked").mkdir()  # a zone directory the walk has not listed: not ours yet
        foreign = tmp_path / "foreign"
        foreign.mkdir()
        for i in range(300):
            (foreign / f"f{i}").write_bytes(b"x")
            (tmp_path / "z" / "unwalked" / f"u{i}").write_bytes(b"x")
        (tmp_path / "z" / "mine").write_bytes(b"y")
        changes = collect(w)
        # (an event read before the kernel merged the next one into it comes twice: the same change again)
        assert list(dict.fromkeys((c.kind, c.zone, c.rel) for c in changes)) == [
            (Kind.DIR, "z", "unwalked"), (Kind.WRITE, "z", "mine")]
        assert w.foreign >= 600  # the whole filesystem's events were read and dropped
    finally:
        w.close()


def test_merged_events_of_a_file_come_back_as_gone_then_arrived(tmp_path: Path) -> None:
    w, _ = make_watcher(tmp_path, "z")
    try:
        (tmp_path / "z" / "tmp").write_bytes(b"x")  # created, written, renamed away before it is read:
        os.rename(tmp_path / "z" / "tmp", tmp_path / "z" / "final")  # one event, CREATE|CLOSE_WRITE|MOVED_FROM
        time.sleep(0.2)
        kinds = [(c.kind, c.rel) for c in collect(w, 0.3)]
        assert (Kind.GONE, "tmp") in kinds and (Kind.ARRIVED, "final") in kinds
    finally:
        w.close()


def test_two_zones_on_one_filesystem_share_one_mark(tmp_path: Path) -> None:
    w, zones = make_watcher(tmp_path, "a", "b")
    try:
        assert len(w._marks) == 1
        w.remove_zone("a")
        (tmp_path / "a" / "x").write_bytes(b"1")
        (tmp_path / "b" / "y").write_bytes(b"2")
        assert {(c.zone, c.rel) for c in collect(w)} == {("b", "y")}
        w.remove_zone("b")
        assert w._marks == {}
    finally:
        w.close()


def test_a_moved_directory_is_followed_and_one_moved_away_forgotten(tmp_path: Path) -> None:
    w, _ = make_watcher(tmp_path, "z")
    root = tmp_path / "z"
    try:
        (root / "d").mkdir()
        assert [c.kind for c in collect(w, 0.3)] == [Kind.DIR]
        assert w.watch_dir("z", "d")  # as the zone's walk of the new directory does
        os.rename(root / "d", root / "e")
        assert [(c.kind, c.rel) for c in collect(w, 0.3)] == [(Kind.DIR, "e")]
        assert not w.is_watched("z", "d")
        assert w.watch_dir("z", "e")
        os.rename(root / "e", tmp_path / "away")
        collect(w, 0.3)
        (tmp_path / "away" / "f").write_bytes(b"x")
        assert collect(w, 0.3) == []
    finally:
        w.close()


def test_the_zone_root_removed_is_reported_lost(tmp_path: Path) -> None:
    w, _ = make_watcher(tmp_path, "z")
    try:
        os.rename(tmp_path / "z", tmp_path / "z-moved")
        lost = [c for c in collect(w) if c.kind is Kind.ZONE_LOST]
        assert [c.zone for c in lost] == ["z"]
    finally:
        w.close()


def _write_config(tmp_path: Path, zone_dir: Path) -> Path:
    env = tmp_path / "irods_environment.json"
    env.write_text('{"irods_host": "127.0.0.1", "irods_port": 1247, "irods_user_name": "rods", '
                   '"irods_zone_name": "tempZone"}')
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[redis]\nurl = "redis://127.0.0.1:1"\n[irods]\nenvironment_file = "{env}"\n'
                   f'[[zone]]\nname = "fz"\npath = "{zone_dir}"\ncollection = "/tempZone/home/rods/fz"\n'
                   f'watcher = "fanotify"\n')
    return cfg


def _without_sys_admin(*argv: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) missing")
    return subprocess.run(["setpriv", "--bounding-set", "-sys_admin", "--", *argv], capture_output=True,
                          text=True, cwd=REPO, timeout=60)


def test_check_config_accepts_fanotify_with_cap_sys_admin(tmp_path: Path) -> None:
    (tmp_path / "landing").mkdir()
    cfg = _write_config(tmp_path, tmp_path / "landing")
    p = subprocess.run([sys.executable, "-m", "irods_ingestd", "-c", str(cfg), "check-config", "--offline"],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 0, p.stderr


def test_check_config_refuses_fanotify_without_cap_sys_admin(tmp_path: Path) -> None:
    (tmp_path / "landing").mkdir()
    cfg = _write_config(tmp_path, tmp_path / "landing")
    p = _without_sys_admin(sys.executable, "-m", "irods_ingestd", "-c", str(cfg), "check-config", "--offline")
    assert p.returncode == 1
    assert "zone 'fz'.watcher = \"fanotify\"" in p.stderr and "CAP_SYS_ADMIN" in p.stderr, p.stderr


def test_daemon_without_cap_sys_admin_polls_a_fanotify_zone(tmp_path: Path) -> None:
    (tmp_path / "landing").mkdir()
    script = (
        "import logging, sys\n"
        "from irods_ingestd.config import load\n"
        "from irods_ingestd.watch.api import Inbox\n"
        "from irods_ingestd.watch.select import Backends\n"
        "logging.basicConfig(level=logging.ERROR, format='%(levelname)s %(message)s')\n"
        "z = load(sys.argv[1], check_paths=False).zones[0]\n"
        "print(Backends(Inbox()).for_zone(z).name)\n")
    p = _without_sys_admin(sys.executable, "-c", script, str(_write_config(tmp_path, tmp_path / "landing")))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "poll"
    assert "ERROR fanotify is not available" in p.stderr and "CAP_SYS_ADMIN" in p.stderr, p.stderr


# --- the pipeline on the real iRODS ------------------------------------------------------------------------
def test_a_fanotify_zone_ingests_into_irods(tmp_path: Path, redis_server: Any, redis_conn: Any,
                                            irods: Any) -> None:
    root = server_readable(tmp_path / "landing")
    pipe = Pipeline(tmp_path, redis_server.url, irods, zone={"watcher": "fanotify", "rescan": "1h"}, root=root)
    outside = tmp_path / "outside"
    outside.mkdir()
    try:
        with pipe:
            time.sleep(0.5)  # the first walk learned the root
            assert pipe.daemon is not None
            zs = pipe.daemon.daemon.zones["z"]
            assert zs.watcher.name == "fanotify" and zs.state == "watching"
            walks = zs.walks_done
            (root / "top.dat").write_bytes(b"t" * 100)
            (root / "run1" / "lane2").mkdir(parents=True)
            for i in range(20):
                (root / "run1" / "lane2" / f"r{i}.fastq").write_bytes(os.urandom(64 + i))
            (outside / "tree" / "sub").mkdir(parents=True)
            (outside / "tree" / "sub" / "moved.bin").write_bytes(b"m" * 7)
            os.rename(outside / "tree", root / "tree")
            (outside / "foreign.dat").write_bytes(b"not ours")
            pipe.drain(timeout=60, min_done=22)
            assert zs.walks_done == walks, "a walk found them, not the events (rescan is an hour)"
        objs = pipe.objects()
        got = {p[len(pipe.collection) + 1:]: row for p, row in objs.items()}
        from irods.models import DataObject
        assert set(got) == {"top.dat", "tree/sub/moved.bin", *(f"run1/lane2/r{i}.fastq" for i in range(20))}
        assert got["tree/sub/moved.bin"][DataObject.size] == 7
        assert pipe.ledger.stats("z")["done"] == 22
    finally:
        pipe.cleanup()


def test_a_kernel_queue_overflow_becomes_an_overflow_change(tmp_path: Path) -> None:
    """The group's queue (fs.fanotify.max_queued_events, 16384 by default) overflows when nobody reads:
    the kernel's FAN_Q_OVERFLOW comes out of the parser and the watcher as OVERFLOW (the zones are walked)."""
    from irods_ingestd.watch import fanotify_sys as S

    limit = int(Path("/proc/sys/fs/fanotify/max_queued_events").read_text())
    if limit > 100_000:
        pytest.skip(f"fs.fanotify.max_queued_events is {limit}")
    fd = S.init()
    try:
        S.mark_filesystem(fd, str(tmp_path))
        for i in range(limit + 1000):  # unread: one event each (distinct names are not merged)
            os.close(os.open(tmp_path / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
        events = []
        os.set_blocking(fd, False)
        while True:
            try:
                events += S.parse(os.read(fd, 1 << 18))
            except BlockingIOError:
                break
    finally:
        os.close(fd)
    overflows = [e for e in events if e[0] & S.FAN_Q_OVERFLOW]
    assert len(overflows) == 1  # (events read after it: the rest of the machine goes on writing)
    w, _ = make_watcher(tmp_path, "z")
    try:
        w.inbox.put_many(overflows)
        assert [c.kind for c in w.changes()] == [Kind.OVERFLOW]
    finally:
        w.close()
