"""Session 4 probe, writers and file kinds (4): register zones, where iRODS points at the landing file itself, so
the catalog's checksum must be the checksum of the bytes on disk.

Whole pipeline (daemon thread, real RQ workers in bursts, real Redis, the real iRODS as rods: one-call and bulk
registration).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from irods_ingestd.ingest import local
from tests.expect import sha2
from tests.integration.test_adv_writers import _rewrite_same_size, checksums, wait_done
from tests.landing import remove_collections
from tests.pipeline_harness import Pipeline, until


@pytest.fixture
def make_reg(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    """Register-zone pipelines on a landing directory outside pytest's base directory (another session
    starting takes other users' rights away from /tmp/pytest-of-root, and the server's account reads the
    files), and a collection named by this process."""
    coll = f"{irods.home}/advreg-{os.getpid()}-{tmp_path.name[-20:]}"
    landing = Path(tempfile.mkdtemp(prefix="ingestd-adv-reg-"))
    landing.chmod(0o755)
    made: list[Pipeline] = []

    def make(**zone: Any) -> Pipeline:
        p = Pipeline(tmp_path, redis_server.url, irods, zone={"mode": "register", "collection": coll, **zone},
                     root=landing)
        p.collection = coll
        made.append(p)
        return p

    try:
        yield make
    finally:
        for p in made:
            p.__exit__(None, None, None)
        remove_collections(irods, coll)
        shutil.rmtree(landing, ignore_errors=True)


def _paths(pipe: Pipeline) -> dict[str, str]:
    from irods.models import Collection, DataObject

    with pipe.irods.session() as s:
        return {f"{r[Collection.name]}/{r[DataObject.name]}"[len(pipe.collection) + 1:]: r[DataObject.path]
                for r in s.query(Collection.name, DataObject.name, DataObject.path)
                .filter(Collection.name == pipe.collection)}


@pytest.mark.parametrize("change", ["append", "truncate-rewrite"])
def test_a_registered_file_changed_later_is_registered_again(make_reg: Any, change: str) -> None:
    pipe = make_reg()
    f = pipe.root / "reg.log"
    v1 = b"registered first\n" * 40
    with pipe:
        f.write_bytes(v1)
        wait_done(pipe, 1)
        if change == "append":
            with open(f, "ab") as out:
                out.write(b"and more\n")
        else:
            f.write_bytes(b"short\n")
        final = f.read_bytes()
        until(pipe, lambda: checksums(pipe).get("reg.log") == sha2(final), 20, "registered again")
        pipe.drain()
    assert checksums(pipe) == {"reg.log": sha2(final)}
    assert _paths(pipe) == {"reg.log": os.path.realpath(f)}
    assert dict(pipe.ledger.failures("z")) == {}


@pytest.mark.parametrize("n", [1, 6])  # 1: the one-call way; 6: the first one-call, the others in bulk
def test_a_same_size_rewrite_while_the_worker_hashes_never_leaves_a_wrong_checksum(
        make_reg: Any, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The worker hashed the file, then it was rewritten in place (same size, mtime set back) before the
    registration: the catalog must end up with the checksum of the bytes on disk."""
    pipe = make_reg()
    victim = pipe.root / f"f{n - 1}.dat"
    real = local.digest
    armed = [True]

    def digest_then_rewrite(loc: local.Local, scheme: str | None) -> Any:
        d = real(loc, scheme)
        if armed and loc.path == str(victim):
            armed.clear()
            _rewrite_same_size(victim, b"Z" * 2000)
        return d

    monkeypatch.setattr(local, "digest", digest_then_rewrite)
    with pipe:
        old = time.time() - 60
        for i in range(n):
            p = pipe.root / f"f{i}.dat"
            p.write_bytes(bytes([65 + i]) * 2000)
            os.utime(p, (old, old))
        until(pipe, lambda: not armed and pipe.ledger.stats("z")["done"] >= n and pipe.quiet(), 30,
              "every file registered")
        pipe.drain()
    objs = checksums(pipe)
    assert objs[victim.name] == sha2(b"Z" * 2000), "the catalog's checksum is not that of the bytes on disk"
    assert objs == {f"f{i}.dat": sha2((pipe.root / f"f{i}.dat").read_bytes()) for i in range(n)}
    assert dict(pipe.ledger.failures("z")) == {}


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
