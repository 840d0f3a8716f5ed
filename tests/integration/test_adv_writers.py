"""Session 4 probe, writers and file kinds: how landing files are written (slowly, appended, rewritten in place,
renamed into place, swapped for something else) against the promise: each complete file reaches iRODS once with
its exact bytes, never a partial version, and a landing file is never deleted unless iRODS holds its exact bytes.

Whole pipeline (daemon thread, real RQ workers in bursts, real Redis, the real iRODS). Cases already in
tests/integration/test_bad_input.py (0-byte and sparse files, hard links in a keep zone, symlinks with and
without `follow`, FIFOs and sockets in the walk, an unreadable file) are not repeated here.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from irods.models import DataObject

from irods_ingestd import checksums as checksums_mod
from irods_ingestd.ingest import after, local, transfer
from tests.expect import sha2
from tests.pipeline_harness import Pipeline, pipelines, until


def checksums(pipe: Pipeline) -> dict[str, str]:
    return {p[len(pipe.collection) + 1:]: row[DataObject.checksum] for p, row in pipe.objects().items()}


def wait_queued(pipe: Pipeline, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while pipe.ledger.stats(pipe.name)["queued"] < n:
        assert time.monotonic() < deadline, f"not queued: {pipe.ledger.stats(pipe.name)}"
        time.sleep(0.05)


def wait_done(pipe: Pipeline, n: int, timeout: float = 20.0) -> None:
    until(pipe, lambda: pipe.ledger.stats(pipe.name)["done"] >= n, timeout, f"{n} files done")


def after_pending(pipe: Pipeline) -> int:
    return after.pending(pipe.r, pipe.ledger.prefix, pipe.name)


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    """Pipelines whose collection is named by this process too: two sessions running the same test at once
    (another engineer's run of the suite) must not share, and remove, each other's collection."""
    coll = f"{irods.home}/adv-{os.getpid()}-{tmp_path.name[-20:]}"
    with pipelines(tmp_path, redis_server.url, irods, readable=False) as make:
        def made(**zone: Any) -> Pipeline:
            p = make(collection=coll, **zone)
            p.collection = coll
            return p

        yield made


# --- slow writers -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("watcher", ["inotify", "poll"])
def test_a_slow_writer_pausing_under_settle_is_ingested_once_whole(make_pipe: Any, watcher: str) -> None:
    """Chunks with pauses longer than half the settle time (the recent-file look-again period) but shorter than
    settle: the file must never be queued before its writer is done, so no partial version is in iRODS."""
    zone: dict[str, Any] = {"settle": "0.5s", "watcher": watcher}
    if watcher == "poll":
        zone["poll_interval"] = "0.2s"
    pipe = make_pipe(**zone)
    chunks = [bytes([65 + i]) * 4096 for i in range(12)]
    f = pipe.root / "slow.dat"
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with open(f, "wb") as out:
                for c in chunks:
                    out.write(c)
                    out.flush()
                    time.sleep(0.35)  # > settle/2, < settle
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    with pipe:
        t = threading.Thread(target=writer)
        t.start()
        while t.is_alive():
            pipe.work()
            time.sleep(0.1)
        t.join()
        assert not errors
        wait_done(pipe, 1)
        pipe.drain()
    assert checksums(pipe) == {"slow.dat": sha2(b"".join(chunks))}
    assert dict(pipe.ledger.failures("z")) == {}


# --- a file changed after it was ingested -------------------------------------------------------------------
@pytest.mark.parametrize("change", ["append", "truncate-rewrite"])
@pytest.mark.parametrize("versions", ["keep", "replace", "conflict"])
def test_a_file_changed_after_its_ingest_is_a_new_version(make_pipe: Any, change: str, versions: str) -> None:
    pipe = make_pipe(versions=versions)
    f = pipe.root / "log.txt"
    v1 = b"first version of the file\n" * 50
    v2 = v1 + b"appended later\n" if change == "append" else b"short rewrite\n"
    with pipe:
        f.write_bytes(v1)
        wait_done(pipe, 1)
        if change == "append":
            with open(f, "ab") as out:
                out.write(b"appended later\n")
        else:
            with open(f, "r+b") as out:
                out.truncate(0)
                out.write(v2)
        if versions == "conflict":
            until(pipe, lambda: dict(pipe.ledger.failures("z")), 20, "the new version to fail as a conflict")
        else:
            until(pipe, lambda: checksums(pipe).get("log.txt") == sha2(v2), 20, "the new version in iRODS")
        pipe.drain()
    objs = checksums(pipe)
    if versions == "keep":
        assert objs == {"log.txt": sha2(v2), "log.txt.~1~": sha2(v1)}
    elif versions == "replace":
        assert objs == {"log.txt": sha2(v2)}
    else:
        assert objs == {"log.txt": sha2(v1)}
        failures = dict(pipe.ledger.failures("z"))
        assert list(failures) == ["log.txt"] and "conflict" in failures["log.txt"]["reason"]
    if versions != "conflict":
        assert dict(pipe.ledger.failures("z")) == {}


# --- same size, mtime set back: content differs, stat does not ---------------------------------------------
def _rewrite_same_size(f: Path, data: bytes) -> None:
    st = f.stat()
    with open(f, "r+b") as out:
        out.write(data)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("how", ["same-size-old-mtime", "append", "chmod"])
def test_same_size_rewrite_with_old_mtime_before_delete_is_not_deleted(make_pipe: Any, how: str) -> None:
    """Verified in iRODS, then rewritten in place (same size, mtime set back) while its delete waits for
    after_hold: the new bytes are not in iRODS, so the landing file must not be deleted (and goes in as a new
    version). `append`: the plain case; `chmod`: the ctime moves but the bytes are the verified ones."""
    pipe = make_pipe(after="delete", after_hold="2s")
    f = pipe.root / "data.bin"
    v1 = b"A" * 5000
    v2 = {"append": v1 + b"more", "chmod": v1}.get(how, b"B" * 5000)
    with pipe:
        f.write_bytes(v1)
        wait_done(pipe, 1)
        assert after_pending(pipe) == 1
        if how == "append":
            with open(f, "ab") as out:
                out.write(b"more")
        elif how == "chmod":
            f.chmod(0o600)
        else:
            _rewrite_same_size(f, v2)
        until(pipe, lambda: after_pending(pipe) == 0 and pipe.quiet(), 30, "the deferred delete to run")
        time.sleep(1.5)
        pipe.drain()
    objs = checksums(pipe)
    if f.exists():
        assert f.read_bytes() == v2
    else:  # deleted: only once its bytes were in iRODS
        assert objs.get("data.bin") == sha2(v2), objs
    assert sha2(v2) in objs.values(), f"the rewritten bytes never reached iRODS: {objs}"
    if how == "chmod":  # the same bytes: deleted, nothing ingested twice
        assert not f.exists() and objs == {"data.bin": sha2(v1)}, objs


# --- the file changes while the worker copies it (big enough for several read chunks) --------------------
BIG = 3 * checksums_mod.CHUNK + 12345


def _change_during_copy(monkeypatch: pytest.MonkeyPatch, change: Any) -> list[int]:
    """Run `change()` once, after the first chunk of the first copy was read and hashed (so the rest of the
    copy reads the changed file)."""
    fired: list[int] = []
    active: list[bool] = []
    real_copy, real_hasher = transfer.copy_stream, checksums_mod.Hasher

    class Hasher(real_hasher):  # type: ignore[misc, valid-type]
        def update(self, chunk: bytes) -> None:
            super().update(chunk)
            if active and not fired:
                fired.append(1)
                change()

    def copy(*a: Any, **kw: Any) -> Any:
        active.append(True)
        try:
            return real_copy(*a, **kw)
        finally:
            active.clear()

    monkeypatch.setattr(checksums_mod, "Hasher", Hasher)
    monkeypatch.setattr(transfer, "copy_stream", copy)
    return fired


@pytest.mark.parametrize("after_", ["keep", "delete"])
@pytest.mark.parametrize("how", ["grow", "same-size-old-mtime"])
def test_a_file_changed_during_its_copy_ends_in_irods_with_its_final_bytes(
        make_pipe: Any, monkeypatch: pytest.MonkeyPatch, after_: str, how: str) -> None:
    pipe = make_pipe(after=after_, after_hold="0s")
    f = pipe.root / "big.bin"
    v1 = b"1" * BIG
    v2 = b"1" * 100 + b"2" * (BIG - 100)

    def change() -> None:
        if how == "grow":
            with open(f, "ab") as out:
                out.write(b"tail")
        else:
            _rewrite_same_size(f, v2)

    final = v1 + b"tail" if how == "grow" else v2
    fired = _change_during_copy(monkeypatch, change)
    with pipe:
        f.write_bytes(v1)
        until(pipe, lambda: bool(fired) and pipe.quiet() and pipe.ledger.stats("z")["done"] >= (after_ == "keep"),
              60, "the copy, the change and the file's ingest")
        time.sleep(1.5)
        pipe.drain(timeout=60)
    objs = checksums(pipe)
    assert dict(pipe.ledger.failures("z")) == {}
    if after_ == "delete" and not f.exists():
        assert sha2(final) in objs.values(), f"deleted, but its bytes are not in iRODS: {objs}"
    assert objs.get("big.bin") == sha2(final), objs  # never the mix of the two the copy read
    assert not [n for n in objs if n != "big.bin" and objs[n] != sha2(v1)], objs


@pytest.mark.parametrize("how", ["grow", "same-size-old-mtime"])
def test_a_file_changed_between_the_workers_checksum_and_its_put(make_pipe: Any, monkeypatch: pytest.MonkeyPatch,
                                                                 how: str) -> None:
    """An update: an object of the same size is there, so the worker hashes the new version first (to tell
    'already present' from 'a new version'), then puts it. The file changes in between."""
    pipe = make_pipe()
    f = pipe.root / "upd.bin"
    v1, v2 = b"a" * BIG, b"b" * BIG
    real = local.digest
    armed: list[bool] = []

    def digest_then_change(loc: local.Local, scheme: str | None) -> Any:
        d = real(loc, scheme)
        if armed and loc.path == str(f):
            armed.clear()
            if how == "grow":
                with open(f, "ab") as out:
                    out.write(b"tail")
            else:
                _rewrite_same_size(f, b"c" * BIG)
        return d

    monkeypatch.setattr(local, "digest", digest_then_change)
    with pipe:
        f.write_bytes(v1)
        wait_done(pipe, 1)
        f.write_bytes(v2)
        armed.append(True)
        final = v2 + b"tail" if how == "grow" else b"c" * BIG
        until(pipe, lambda: not armed and checksums(pipe).get("upd.bin") == sha2(final) and pipe.quiet(), 60,
              "the final version in iRODS")
        time.sleep(1.5)
        pipe.drain(timeout=60)
    assert checksums(pipe) == {"upd.bin": sha2(final), "upd.bin.~1~": sha2(v1)}
    assert dict(pipe.ledger.failures("z")) == {}


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
