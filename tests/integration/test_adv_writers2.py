"""Session 4 probe, writers and file kinds (2): files renamed into place, deleted or replaced by a directory (and
back) between the walk and the worker or after their ingest, hard links and empty files in a delete zone.

Whole pipeline (daemon thread, real RQ workers in bursts, real Redis, the real iRODS).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.expect import sha2
from tests.integration.test_adv_writers import after_pending, checksums, make_pipe, wait_done, wait_queued
from tests.pipeline_harness import until

__all__ = ["make_pipe"]  # the fixture, shared


def failures(pipe: Any) -> dict[str, Any]:
    return dict(pipe.ledger.failures(pipe.name))


# --- write to a temporary name, rename into place (rsync, cp --backup, editors) -----------------------------
@pytest.mark.parametrize("after_", ["keep", "delete"])
def test_rsync_style_temp_then_rename_ingests_only_the_final_name_once(make_pipe: Any, after_: str) -> None:
    pipe = make_pipe(after=after_, after_hold="0s", settle="0.3s")
    tmp = pipe.root / "sub" / ".data.csv.Xa9Q2z"  # rsync: .<name>.XXXXXX in the target directory
    final = pipe.root / "sub" / "data.csv"
    body = b"".join(b"row %d\n" % i for i in range(2000))
    with pipe:
        tmp.parent.mkdir()
        with open(tmp, "wb") as out:
            for i in range(0, len(body), 4096):
                out.write(body[i:i + 4096])
                out.flush()
                time.sleep(0.05)
        time.sleep(1.2)  # the temporary file alone, quiet for longer than settle, seen by a rescan
        pipe.work()
        os.utime(tmp, (1_600_000_000, 1_600_000_000))  # rsync -t sets the mtime before the rename
        os.rename(tmp, final)
        wait_done(pipe, 1) if after_ == "keep" else until(pipe, lambda: not final.exists(), 20, "the delete")
        time.sleep(1.5)
        pipe.drain()
    assert checksums(pipe) == {"sub/data.csv": sha2(body)}
    assert failures(pipe) == {}


def test_a_same_size_same_mtime_file_renamed_over_one_waiting_for_delete_is_ingested(make_pipe: Any) -> None:
    """rsync -t of another file with the same size and mtime onto a name whose delete waits: a new inode, so
    the delete leaves it, and it goes in as a new version before it is deleted in turn."""
    pipe = make_pipe(after="delete", after_hold="2s")
    f = pipe.root / "same.bin"
    v1, v2 = b"x" * 3000, b"y" * 3000
    with pipe:
        f.write_bytes(v1)
        wait_done(pipe, 1)
        st = f.stat()
        tmp = pipe.root / ".same.bin.Q1w2E3"
        tmp.write_bytes(v2)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(tmp, f)
        until(pipe, lambda: not f.exists(), 30, "the new version to be ingested and deleted")
        pipe.drain()
    assert checksums(pipe) == {"same.bin": sha2(v2), "same.bin.~1~": sha2(v1)}
    assert failures(pipe) == {}


# --- gone or replaced between the walk and the worker -------------------------------------------------------
@pytest.mark.parametrize("after_", ["keep", "delete"])
def test_a_file_deleted_after_it_was_queued_leaves_nothing_behind(make_pipe: Any, after_: str) -> None:
    pipe = make_pipe(after=after_, after_hold="0s")
    with pipe:
        (pipe.root / "gone.dat").write_bytes(b"g" * 100)
        (pipe.root / "stays.dat").write_bytes(b"s" * 100)
        wait_queued(pipe, 2)
        (pipe.root / "gone.dat").unlink()
        until(pipe, lambda: pipe.quiet() and pipe.ledger.stats("z")["queued"] == 0, 20, "the batch")
        time.sleep(1.5)
        pipe.drain()
    assert checksums(pipe) == {"stays.dat": sha2(b"s" * 100)}
    assert failures(pipe) == {}
    assert pipe.ledger.stats("z")["queued"] == 0


def test_a_file_replaced_by_a_directory_before_the_worker_ran(make_pipe: Any) -> None:
    pipe = make_pipe()
    x = pipe.root / "x"
    with pipe:
        x.write_bytes(b"a file first")
        wait_queued(pipe, 1)
        x.unlink()
        x.mkdir()
        (x / "inner").write_bytes(b"inner file")
        wait_done(pipe, 1)
        time.sleep(1.5)
        pipe.drain()
    assert checksums(pipe) == {"x/inner": sha2(b"inner file")}
    assert failures(pipe) == {}


def test_a_directory_replaced_by_a_file_before_the_worker_ran(make_pipe: Any) -> None:
    """d/a was queued, then d became a file: d/a is gone (ENOTDIR, not a failure to list), d goes in."""
    pipe = make_pipe()
    d = pipe.root / "d"
    with pipe:
        d.mkdir()
        (d / "a").write_bytes(b"in the directory")
        wait_queued(pipe, 1)
        shutil.rmtree(d)
        d.write_bytes(b"now a file")
        wait_done(pipe, 1)
        time.sleep(1.5)
        pipe.drain()
    assert checksums(pipe) == {"d": sha2(b"now a file")}
    assert failures(pipe) == {}
    assert pipe.ledger.stats("z")["queued"] == 0


def test_an_ingested_file_replaced_by_a_directory_fails_clearly_once(make_pipe: Any, caplog: Any) -> None:
    """Object `x` is in iRODS; `x/` is now a directory: iRODS cannot hold a collection under the object's name.
    Its files fail with a reason naming it (not retried forever, nothing overwritten), the rest goes on."""
    pipe = make_pipe()
    x = pipe.root / "x"
    with pipe:
        x.write_bytes(b"a file first")
        wait_done(pipe, 1)
        x.unlink()
        x.mkdir()
        (x / "inner").write_bytes(b"inner file")
        (pipe.root / "other").write_bytes(b"other")
        until(pipe, lambda: bool(failures(pipe)) and pipe.ledger.stats("z")["done"] >= 2, 30,
              "x/inner to fail and other to go in")
        time.sleep(2.5)
        pipe.drain()
    assert checksums(pipe) == {"x": sha2(b"a file first"), "other": sha2(b"other")}
    f = failures(pipe)
    assert list(f) == ["x/inner"], f
    assert f"{pipe.collection}/x" in f["x/inner"]["reason"] and f["x/inner"]["kind"] == "conflict", f
    failed_lines = [r for r in caplog.records if "x/inner" in r.getMessage() and r.levelname == "ERROR"]
    assert len(failed_lines) == 1, [r.getMessage() for r in failed_lines]


def test_an_ingested_directory_replaced_by_a_file_fails_clearly_once(make_pipe: Any, caplog: Any) -> None:
    """Collection `d` is in iRODS; `d` is now a file: a conflict naming the collection, and no temporary copy
    left behind (needs attempt._place's CAT_NAME_EXISTS_AS_COLLECTION case, the names-and-paths probe's)."""
    pipe = make_pipe()
    d = pipe.root / "d"
    with pipe:
        d.mkdir()
        (d / "a").write_bytes(b"in the directory")
        wait_done(pipe, 1)
        shutil.rmtree(d)
        d.write_bytes(b"now a file")
        (pipe.root / "other").write_bytes(b"other")
        until(pipe, lambda: bool(failures(pipe)) and pipe.ledger.stats("z")["done"] >= 2, 30,
              "d to fail and other to go in")
        time.sleep(2.5)
        pipe.drain()
    assert checksums(pipe) == {"d/a": sha2(b"in the directory"), "other": sha2(b"other")}
    f = failures(pipe)
    assert list(f) == ["d"], f
    assert "collection" in f["d"]["reason"] and f["d"]["kind"] == "conflict", f
    failed_lines = [r for r in caplog.records if r.levelname == "ERROR" and "landing/d (" in r.getMessage()]
    assert len(failed_lines) == 1, [r.getMessage() for r in failed_lines]


# --- hard links, empty and sparse files where the landing file is deleted -----------------------------------
@pytest.mark.parametrize("after_", ["delete", "move"])
@pytest.mark.parametrize("hold", ["0s", "1s"])
def test_hard_links_in_a_delete_or_move_zone_are_each_ingested_then_disposed(make_pipe: Any, tmp_path: Path,
                                                                              hold: str, after_: str) -> None:
    """Two names, one inode: each is ingested; disposing of one changes the other's link count (and ctime),
    which must not keep the other in the landing zone forever nor let it go unverified."""
    done = tmp_path / "done"
    pipe = make_pipe(after=after_, after_hold=hold, **({"move_to": str(done)} if after_ == "move" else {}))
    a, b = pipe.root / "a.dat", pipe.root / "sub" / "b.dat"
    with pipe:
        b.parent.mkdir()
        a.write_bytes(b"one inode, two names")
        os.link(a, b)
        until(pipe, lambda: not a.exists() and not b.exists(), 30, "both names gone from the landing zone")
        pipe.drain()
    assert checksums(pipe) == {"a.dat": sha2(b"one inode, two names"), "sub/b.dat": sha2(b"one inode, two names")}
    assert failures(pipe) == {}
    assert after_pending(pipe) == 0
    if after_ == "move":
        assert (done / "a.dat").read_bytes() == (done / "sub" / "b.dat").read_bytes() == b"one inode, two names"


def test_empty_and_sparse_files_in_a_delete_zone(make_pipe: Any) -> None:
    pipe = make_pipe(after="delete", after_hold="0s")
    empty, sparse = pipe.root / "empty", pipe.root / "sparse"
    with pipe:
        empty.write_bytes(b"")
        with open(sparse, "wb") as f:
            f.truncate(9 << 20)
            f.write(b"head")
        until(pipe, lambda: not empty.exists() and not sparse.exists(), 30, "both deleted")
        pipe.drain()
    assert checksums(pipe) == {"empty": sha2(b""), "sparse": sha2(b"head" + b"\0" * ((9 << 20) - 4))}
    assert failures(pipe) == {}


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
