"""Session 4 probe, writers and file kinds (5): a landing file the worker cannot read, in a zone that deletes.

The worker runs with the service user's file-system rights (nobody, through tests.privileges.fs_user: the
tests run as root, which reads everything); the landing directory is nobody's, so the worker may delete in it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.expect import sha2
from tests.integration.test_adv_writers import checksums, make_pipe
from tests.landing import remove_collections
from tests.pipeline_harness import Pipeline, until
from tests.privileges import NOBODY, can_switch, fs_user

__all__ = ["make_pipe"]  # the fixture, shared


@pytest.fixture
def nobodys_landing() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="ingestd-adv-unread-"))
    d.chmod(0o755)
    root = d / "landing"
    root.mkdir(mode=0o755)
    os.chown(root, NOBODY, NOBODY)
    yield root
    subprocess.run(["chmod", "-R", "u+rwx", str(d)], check=False)
    shutil.rmtree(d, ignore_errors=True)


def _queued(p: Pipeline, n: int) -> None:
    deadline = time.monotonic() + 10
    while p.ledger.stats("z")["queued"] < n:
        assert time.monotonic() < deadline, p.ledger.stats("z")
        time.sleep(0.05)


@pytest.mark.skipif(not can_switch(), reason="needs root to take the file-system rights of another user")
def test_an_unreadable_file_in_a_delete_zone_fails_is_kept_and_goes_in_after_retry(
        tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any, nobodys_landing: Path, caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    root = nobodys_landing
    p = Pipeline(tmp_path, redis_server.url, irods, root=root,
                 zone={"after": "delete", "after_hold": "0s",
                       "collection": f"{irods.home}/advunread-{os.getpid()}-{tmp_path.name[-20:]}"})
    p.collection = f"{irods.home}/advunread-{os.getpid()}-{tmp_path.name[-20:]}"
    p.user_context = fs_user
    locked, fine = root / "locked.bin", root / "fine.bin"
    try:
        with p:
            locked.write_bytes(b"secret")
            locked.chmod(0o000)
            fine.write_bytes(b"fine")
            fine.chmod(0o644)
            _queued(p, 2)
            assert p.work_direct() >= 1
            time.sleep(2.5)  # rescans: the failed file is not queued again
            assert p.work_direct() == 0
            assert not fine.exists(), "the readable file was not deleted"
            assert locked.exists(), "the unreadable file was deleted"
            failures = dict(p.ledger.failures("z"))
            assert list(failures) == ["locked.bin"] and "Permission denied" in failures["locked.bin"]["reason"]
            locked.chmod(0o644)
            r = subprocess.run([sys.executable, "-m", "irods_ingestd", "-c", str(p.config_path), "retry"],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            _queued(p, 1)
            assert p.work_direct() == 1
            assert not locked.exists()
        assert checksums(p) == {"fine.bin": sha2(b"fine"), "locked.bin": sha2(b"secret")}
        assert dict(p.ledger.failures("z")) == {}
    finally:
        p.__exit__(None, None, None)
        remove_collections(irods, p.collection)


@pytest.mark.parametrize("mtime", [0, -86400, 4_102_444_800, 2**33 + 0.123456789])  # 1970, 1969, 2100, 2242
def test_odd_mtimes_are_ingested_once_with_their_mtime(make_pipe: Any, mtime: float) -> None:
    """Writers set mtimes from other clocks (cp -p, tar, a skewed NFS client): the epoch itself, before it, far
    in the future. Each file is ingested soon, once, with that mtime in its provenance."""
    pipe = make_pipe()
    f = pipe.root / "timed.dat"
    with pipe:
        tmp = pipe.root / ".timed.dat.Zz9Yy8"
        tmp.write_bytes(b"t" * 123)
        os.utime(tmp, (mtime, mtime))
        os.rename(tmp, f)
        t0 = time.monotonic()
        until(pipe, lambda: pipe.ledger.stats("z")["done"] >= 1, 15, "the file ingested")
        took = time.monotonic() - t0
        time.sleep(2.5)  # rescans: not queued again
        pipe.drain()
    assert took < 10, took
    assert checksums(pipe) == {"timed.dat": sha2(b"t" * 123)}
    with pipe.irods.session() as s:
        from irods.models import DataObject

        avus = {m.name: m.value for m in s.metadata.get(DataObject, f"{pipe.collection}/timed.dat")}
    assert avus["ingestd::mtime"] == str(f.stat().st_mtime_ns)
    assert dict(pipe.ledger.failures("z")) == {}


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
