"""Session 4 probes, the landing directory itself changing under a running daemon (a subprocess, the
real iRODS). Rescans are an hour apart, so what is found is found by the watcher and the zone's own
checks, not by a timed walk.

- a zone whose directory does not exist at start and appears later;
- a landing directory renamed away and another created in its place;
- a landing directory that is a symlink (and one repointed to another directory while the daemon runs).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from tests.daemon_harness import wait_for
from tests.integration.test_adv_ops import Proc, pipe, write_files
from tests.integration.test_adv_ops_cli import cli
from tests.integration.test_adv_reload import in_coll

WATCHERS = ["inotify", "fanotify", "poll"]


def watcher(name: str, tmp: Any) -> dict[str, str]:
    """The zone settings of a watcher (poll: walked every half second; fanotify: skipped where refused)."""
    if name == "fanotify":
        from irods_ingestd.watch.fanotify_sys import unavailable

        why = unavailable(str(tmp))
        if why:
            pytest.skip(f"fanotify: {why}")
    return {"watcher": name, **({"poll_interval": "0.5s"} if name == "poll" else {})}


def _status(p: Any) -> dict[str, Any]:
    r = cli(p.config_path, "status", "--json")
    return json.loads(r.stdout) if r.stdout else {}


@pytest.mark.parametrize("kind", WATCHERS)
def test_a_zone_directory_that_appears_after_start(request, tmp_path, redis_server, redis_conn, irods, kind):
    later = tmp_path / "later"
    later.mkdir()  # the harness loads the config with its paths checked; the daemon's start does not
    p = pipe(request, tmp_path, redis_server.url, irods, path=str(later), rescan="1h", **watcher(kind, tmp_path))
    later.rmdir()
    d = Proc(p.config_path, tmp_path / "d.log", "run")
    try:
        assert wait_for(lambda: "running with 1 zones" in d.text(), timeout=15), d.text()
        assert "later" in d.text()  # the journal says the directory is not there
        st = wait_for(lambda: _status(p).get("zones", {}).get("z", {}).get("daemon") and _status(p), timeout=10)
        z = st["zones"]["z"]
        assert z["state"] == "lost" and "later" in (z["lost_reason"] or ""), z  # and says why
        later.mkdir()
        rels = ["x.dat", "sub/y.dat"]
        write_files(later, rels)
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 2, timeout=30), (p.ledger.stats("z"), d.text())
        p.work()
        assert wait_for(lambda: p.ledger.stats("z")["done"] == 2, timeout=20)
    finally:
        assert d.stop() == 0
    assert in_coll(p, p.collection) == sorted(rels)


@pytest.mark.parametrize("kind", WATCHERS)
def test_a_landing_directory_renamed_away_and_made_again(request, tmp_path, redis_server, redis_conn, irods, kind):
    p = pipe(request, tmp_path, redis_server.url, irods, rescan="1h", **watcher(kind, tmp_path))
    assert p.root is not None
    d = Proc(p.config_path, tmp_path / "d.log", "run")
    try:
        assert wait_for(lambda: "running with 1 zones" in d.text(), timeout=15), d.text()
        write_files(p.root, ["one.dat", "sub/two.dat"])
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 2, timeout=20), p.ledger.stats("z")
        p.work()
        os.rename(p.root, tmp_path / "landing.old")
        p.root.mkdir()
        time.sleep(0.5)
        write_files(p.root, ["three.dat", "sub/four.dat"])
        write_files(tmp_path / "landing.old", ["sub/stale.dat", "elsewhere.dat"])  # outside the zone now
        assert wait_for(lambda: p.ledger.stats("z")["done"] + p.ledger.stats("z")["queued"] >= 4, timeout=30), \
            (p.ledger.stats("z"), d.text())
        p.work()
        assert wait_for(lambda: p.ledger.stats("z")["done"] == 4, timeout=20), (p.ledger.stats("z"), d.text())
        time.sleep(1.0)
        p.work()
    finally:
        assert d.stop() == 0
    assert in_coll(p, p.collection) == sorted(["one.dat", "sub/two.dat", "three.dat", "sub/four.dat"])
    s = p.ledger.stats("z")
    assert (s["queued"], s["done"], s["failed"]) == (0, 4, 0)


@pytest.mark.parametrize("kind", WATCHERS)
def test_a_landing_directory_that_is_a_symlink(request, tmp_path, redis_server, redis_conn, irods, kind):
    real = tmp_path / "real-a"
    other = tmp_path / "real-b"
    real.mkdir()
    other.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    p = pipe(request, tmp_path, redis_server.url, irods, path=str(link), rescan="1h", **watcher(kind, tmp_path))
    d = Proc(p.config_path, tmp_path / "d.log", "run")
    try:
        assert wait_for(lambda: "running with 1 zones" in d.text(), timeout=15), d.text()
        write_files(real, ["a.dat", "sub/b.dat"])  # written by the real name
        write_files(link, ["c.dat"])  # and through the link
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 3, timeout=20), (p.ledger.stats("z"), d.text())
        p.work()
        assert wait_for(lambda: p.ledger.stats("z")["done"] == 3, timeout=20)
        tmp = tmp_path / "link.new"
        tmp.symlink_to(other)
        os.rename(tmp, link)  # repointed: the zone is now real-b
        time.sleep(0.5)
        write_files(other, ["d.dat"])
        write_files(real, ["stale.dat"])  # no longer the zone
        assert wait_for(lambda: p.ledger.stats("z")["done"] + p.ledger.stats("z")["queued"] >= 4, timeout=30), \
            (p.ledger.stats("z"), d.text())
        p.work()
        assert wait_for(lambda: p.ledger.stats("z")["done"] == 4, timeout=20), (p.ledger.stats("z"), d.text())
        time.sleep(1.0)
        p.work()
    finally:
        assert d.stop() == 0
    assert in_coll(p, p.collection) == sorted(["a.dat", "sub/b.dat", "c.dat", "d.dat"])


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
