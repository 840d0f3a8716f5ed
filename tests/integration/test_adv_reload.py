"""Session 4 probes, SIGHUP reloads mid-flight (the daemon a subprocess, workers real, the real iRODS):
files queued under the old settings land once, where the old settings said; files after the reload land
where the new ones say; nothing is lost and nothing lands in two places.

- a zone removed while its files are queued, then added back;
- a zone's collection changed while files are queued;
- a zone's mode changed from put to register while files are queued.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import wait_for
from tests.integration.test_adv_ops import Proc, pipe, write_files
from tests.landing import remove_collections, server_readable
from tests.pipeline_harness import Pipeline


def reload(d: Proc, cfg: Path, text: str) -> None:
    n = d.text().count("configuration reloaded")
    cfg.write_text(text)
    d.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: d.text().count("configuration reloaded") > n or "reload refused" in d.text(),
                    timeout=15), d.text()
    assert "reload refused" not in d.text(), d.text()


def zone_block(name: str, path: Path, collection: str, **extra: str) -> str:
    body = (f'\n[[zone]]\nname = "{name}"\npath = "{path}"\ncollection = "{collection}"\n'
            f'settle = "0.3s"\nrescan = "1s"\n')
    return body + "".join(f'{k} = "{v}"\n' for k, v in extra.items())


def base(p: Pipeline) -> str:
    """The pipeline's config without its [[zone]]."""
    return p.config_path.read_text().split("[[zone]]")[0]


def in_coll(p: Pipeline, coll: str) -> list[str]:
    """The objects below a collection, relative to it."""
    from irods.column import Like
    from irods.models import Collection, DataObject

    s = p.irods.session()
    try:
        out = []
        for cond in (Collection.name == coll, Like(Collection.name, coll + "/%")):
            for row in s.query(Collection.name, DataObject.name).filter(cond):
                out.append(f"{row[Collection.name]}/{row[DataObject.name]}"[len(coll) + 1:])
        return sorted(out)
    finally:
        s.cleanup()


def replica_paths(p: Pipeline, coll: str) -> dict[str, str]:
    from irods.models import Collection, DataObject

    s = p.irods.session()
    try:
        q = s.query(Collection.name, DataObject.name, DataObject.path).filter(Collection.name == coll)
        return {row[DataObject.name]: row[DataObject.path] for row in q}
    finally:
        s.cleanup()


def drained(p: Pipeline, zone: str, done: int) -> None:
    p.work()
    assert wait_for(lambda: p.ledger.stats(zone)["done"] == done, timeout=30), p.ledger.stats(zone)


def test_a_zone_removed_with_files_queued_then_added_back(request, tmp_path, redis_server, redis_conn, irods):
    p = pipe(request, tmp_path, redis_server.url, irods)
    ydir = tmp_path / "y-landing"
    ydir.mkdir()
    ycoll = p.collection + "-y"
    request.addfinalizer(lambda: remove_collections(irods, ycoll))
    assert p.root is not None
    both = base(p) + zone_block("z", p.root, p.collection) + zone_block("y", ydir, ycoll)
    only_z = base(p) + zone_block("z", p.root, p.collection)
    p.config_path.write_text(both)
    d = Proc(p.config_path, tmp_path / "d.log", "run")
    try:
        assert wait_for(lambda: "running with 2 zones" in d.text(), timeout=15), d.text()
        first = [f"a/f{i}.dat" for i in range(10)]
        write_files(ydir, first)
        assert wait_for(lambda: p.ledger.stats("y")["queued"] == 10, timeout=20), p.ledger.stats("y")
        reload(d, p.config_path, only_z)
        later = [f"b/g{i}.dat" for i in range(5)]
        write_files(ydir, later)  # the zone is gone: nothing of it is queued any more
        time.sleep(1.5)
        assert p.ledger.stats("y")["queued"] == 10
        drained(p, "y", 10)  # what was queued under the old config still goes in, once
        assert in_coll(p, ycoll) == sorted(first)
        reload(d, p.config_path, both)  # back: only what it has not seen is queued
        assert wait_for(lambda: p.ledger.stats("y")["queued"] == 5, timeout=20), p.ledger.stats("y")
        drained(p, "y", 15)
        time.sleep(1.5)  # a rescan: nothing again
        assert p.ledger.stats("y")["queued"] == 0
    finally:
        assert d.stop() == 0
    assert in_coll(p, ycoll) == sorted(first + later)
    s = p.ledger.stats("y")
    assert (s["queued"], s["done"], s["failed"]) == (0, 15, 0)


def test_a_collection_changed_while_files_are_queued(request, tmp_path, redis_server, redis_conn, irods):
    p = pipe(request, tmp_path, redis_server.url, irods)
    assert p.root is not None
    new_coll = p.collection + "-new"
    request.addfinalizer(lambda: remove_collections(irods, new_coll))
    d = Proc(p.config_path, tmp_path / "d.log", "run")
    try:
        assert wait_for(lambda: "running with 1 zones" in d.text(), timeout=15), d.text()
        before = [f"a/f{i}.dat" for i in range(10)]
        write_files(p.root, before)
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 10, timeout=20), p.ledger.stats("z")
        reload(d, p.config_path, base(p) + zone_block("z", p.root, new_coll))
        after = [f"b/g{i}.dat" for i in range(6)]
        write_files(p.root, after)
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 16, timeout=20), p.ledger.stats("z")
        drained(p, "z", 16)
        time.sleep(1.5)  # a rescan of the changed zone queues nothing again
        assert p.ledger.stats("z")["queued"] == 0
    finally:
        assert d.stop() == 0
    assert in_coll(p, p.collection) == sorted(before)
    assert in_coll(p, new_coll) == sorted(after)


def test_a_mode_changed_from_put_to_register_while_files_are_queued(request, tmp_path, redis_server, redis_conn,
                                                                     irods):
    p = pipe(request, tmp_path, redis_server.url, irods)
    assert p.root is not None
    server_readable(p.root)
    d = Proc(p.config_path, tmp_path / "d.log", "run")
    try:
        assert wait_for(lambda: "running with 1 zones" in d.text(), timeout=15), d.text()
        write_files(p.root, [f"p{i}.dat" for i in range(4)])
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 4, timeout=20), p.ledger.stats("z")
        reload(d, p.config_path, base(p) + zone_block("z", p.root, p.collection, mode="register"))
        write_files(p.root, [f"r{i}.dat" for i in range(4)])
        for f in p.root.glob("r*.dat"):
            f.chmod(0o644)
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 8, timeout=20), p.ledger.stats("z")
        drained(p, "z", 8)
        time.sleep(1.5)
        assert p.ledger.stats("z")["queued"] == 0
    finally:
        assert d.stop() == 0
    paths: dict[str, Any] = replica_paths(p, p.collection)
    assert sorted(paths) == sorted([f"p{i}.dat" for i in range(4)] + [f"r{i}.dat" for i in range(4)])
    for name, phys in paths.items():
        if name.startswith("p"):
            assert phys != str(p.root / name), (name, phys)  # put: a copy in the vault
        else:
            assert phys == str(p.root / name), (name, phys)  # registered in place
    s = p.ledger.stats("z")
    assert (s["queued"], s["done"], s["failed"]) == (0, 8, 0)


def test_a_zone_renamed_by_a_reload_ingests_nothing_twice(request, tmp_path, redis_server, redis_conn, irods):
    """The same directory and collection under a new zone name: the new name's ledger is empty, so the walk
    offers every file again; each is found already in iRODS (recorded, no second object, no failure)."""
    p = pipe(request, tmp_path, redis_server.url, irods)
    assert p.root is not None
    d = Proc(p.config_path, tmp_path / "d.log", "run")
    rels = [f"a/f{i}.dat" for i in range(5)]
    try:
        assert wait_for(lambda: "running with 1 zones" in d.text(), timeout=15), d.text()
        write_files(p.root, rels)
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 5, timeout=20), p.ledger.stats("z")
        drained(p, "z", 5)
        reload(d, p.config_path, base(p) + zone_block("z2", p.root, p.collection))
        assert wait_for(lambda: p.ledger.stats("z2")["queued"] + p.ledger.stats("z2")["done"] +
                        p.ledger.stats("z2")["failed"] == 5, timeout=20), p.ledger.stats("z2")
        p.work()
        assert wait_for(lambda: p.ledger.stats("z2")["queued"] == 0, timeout=20), p.ledger.stats("z2")
    finally:
        assert d.stop() == 0
    assert in_coll(p, p.collection) == sorted(rels)  # no name.~1~ copies
    failed = dict(p.ledger.failures("z2"))
    assert failed == {}, failed


def test_a_reload_of_a_config_that_is_not_text_or_not_a_file_is_refused(request, tmp_path, redis_server, redis_conn,
                                                                         irods):
    """The daemon never dies of its config: bytes that are not UTF-8, then a directory where the file was,
    are each refused on SIGHUP, the running configuration kept; check-config and run say exit 2."""
    import subprocess
    import sys

    p = pipe(request, tmp_path, redis_server.url, irods)
    assert p.root is not None
    good = p.config_path.read_text()
    d = Proc(p.config_path, tmp_path / "d.log", "run")
    try:
        assert wait_for(lambda: "running with 1 zones" in d.text(), timeout=15), d.text()
        for n, bad in enumerate(("bytes", "directory")):
            if bad == "bytes":
                p.config_path.write_bytes(b"\xff\xfe[redis]\n")
            else:
                p.config_path.unlink()
                p.config_path.mkdir()
            for args in (("check-config", "--offline"), ("run",)):
                r = subprocess.run([sys.executable, "-m", "irods_ingestd", "-c", str(p.config_path), *args],
                                   capture_output=True, text=True, timeout=60)
                assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
                assert str(p.config_path) in r.stderr, r.stderr
            d.p.send_signal(signal.SIGHUP)
            assert wait_for(lambda n=n: d.text().count("reload refused") > n or d.p.poll() is not None, timeout=15)
            assert d.p.poll() is None, d.text()
        p.config_path.rmdir()
        p.config_path.write_text(good)
        write_files(p.root, ["after.dat"])
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 1, timeout=20), p.ledger.stats("z")
        drained(p, "z", 1)
    finally:
        assert d.stop() == 0
    assert in_coll(p, p.collection) == ["after.dat"]


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
