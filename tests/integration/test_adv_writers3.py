"""Session 4 probe, writers and file kinds (3): special files swapped in where a regular file was queued. A FIFO
opened for reading blocks until a writer comes, so nothing (walker, settler, daemon, worker) may ever open one;
a symlink swapped in must never lead the worker outside the zone.

FIFOs, sockets, symlink loops, dangling and outside links found by the walk are in test_bad_input.py.
Whole pipeline (daemon thread, real RQ workers in bursts, real Redis, the real iRODS).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from irods_ingestd.ingest import local
from tests.expect import sha2
from tests.integration.test_adv_writers import checksums, make_pipe, wait_done, wait_queued
from tests.pipeline_harness import until

__all__ = ["make_pipe"]  # the fixture, shared


class FifoRescuer:
    """A thread that, once `grace` seconds passed, keeps opening the FIFOs it is given for writing (and closing
    them), so a reader blocked in open(2) on one is released; `rescued` says whether it ever had to."""

    def __init__(self, grace: float = 4.0) -> None:
        self.paths: list[Path] = []
        self.rescued: list[str] = []
        self.grace = grace
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self.stop.wait(0.2):
            if time.monotonic() - start < self.grace:
                continue
            for p in list(self.paths):
                try:
                    fd = os.open(p, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as e:
                    if e.errno not in (errno.ENXIO, errno.ENOENT):  # ENXIO: nobody is reading
                        raise
                    continue
                os.close(fd)
                self.rescued.append(str(p))


@pytest.fixture
def rescuer() -> Iterator[FifoRescuer]:
    r = FifoRescuer()
    r.t.start()
    yield r
    r.stop.set()
    r.t.join()


def _to_fifo(p: Path) -> None:
    p.unlink()
    os.mkfifo(p)


def test_a_queued_file_replaced_by_a_fifo_is_skipped_without_opening_it(make_pipe: Any, rescuer: FifoRescuer,
                                                                          caplog: Any) -> None:
    pipe = make_pipe()
    f = pipe.root / "was-a-file"
    with pipe:
        f.write_bytes(b"regular at first")
        (pipe.root / "other").write_bytes(b"other")
        wait_queued(pipe, 2)
        _to_fifo(f)
        rescuer.paths.append(f)
        wait_done(pipe, 1)
        time.sleep(2.0)
        pipe.drain()
    assert not rescuer.rescued, "something opened the FIFO and blocked"
    assert checksums(pipe) == {"other": sha2(b"other")}
    assert dict(pipe.ledger.failures("z")) == {}


@pytest.mark.parametrize("when", ["new", "update"])
def test_a_fifo_swapped_in_between_the_workers_stat_and_open_never_blocks(
        make_pipe: Any, rescuer: FifoRescuer, monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """The worker stats the file (regular), then opens it: a FIFO put in between must not hold the worker in
    open(2). `update`: an object of the same size is there, so the worker hashes the file first (by its path)."""
    pipe = make_pipe()
    f = pipe.root / "racy.dat"
    real = local.check_local
    armed: list[bool] = []

    def check_then_swap(zone: Any, item: Any) -> local.Local:
        loc = real(zone, item)
        if armed and item.rel == "racy.dat":
            armed.clear()
            _to_fifo(f)
            rescuer.paths.append(f)
        return loc

    monkeypatch.setattr(local, "check_local", check_then_swap)
    with pipe:
        if when == "update":
            f.write_bytes(b"v1" * 500)
            wait_done(pipe, 1)
            f.write_bytes(b"v2" * 500)
            time.sleep(0.05)
        else:
            f.write_bytes(b"v1" * 500)
        armed.append(True)
        until(pipe, lambda: not armed and pipe.quiet(), 30, "the swap and the worker to finish")
        time.sleep(1.5)
        pipe.drain()
    assert not rescuer.rescued, "the worker blocked opening the FIFO"
    expect = {"racy.dat": sha2(b"v1" * 500)} if when == "update" else {}
    assert checksums(pipe) == expect
    assert dict(pipe.ledger.failures("z")) == {}


@pytest.mark.parametrize("symlinks", ["skip", "follow"])
def test_a_queued_file_replaced_by_a_symlink_to_outside_is_never_read(make_pipe: Any, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        symlinks: str) -> None:
    """Between the worker's stat and its open, the file becomes a symlink to a secret outside the zone: the
    secret's bytes must never reach iRODS (nor be hashed into a 'present' verdict)."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"S" * 1000)  # the same size as the landing file
    pipe = make_pipe(symlinks=symlinks)
    f = pipe.root / "innocent.txt"
    real = local.check_local
    armed = [True]

    def check_then_swap(zone: Any, item: Any) -> local.Local:
        loc = real(zone, item)
        if armed and item.rel == "innocent.txt":
            armed.clear()
            f.unlink()
            os.symlink(secret, f)
        return loc

    monkeypatch.setattr(local, "check_local", check_then_swap)
    with pipe:
        f.write_bytes(b"I" * 1000)
        until(pipe, lambda: not armed and pipe.quiet(), 30, "the swap and the worker to finish")
        time.sleep(1.5)
        pipe.drain()
    objs = checksums(pipe)
    assert sha2(b"S" * 1000) not in objs.values(), objs
    assert objs in ({}, {"innocent.txt": sha2(b"I" * 1000)}), objs


def test_a_manifest_replaced_by_a_fifo_never_blocks_the_daemon_or_a_worker(make_pipe: Any, rescuer: FifoRescuer,
                                                                            caplog: Any) -> None:
    """A manifest zone's set was released (its manifest read, its files queued); then the manifest became a
    FIFO. The worker's look at the pending directory and a restarted daemon's reload of it read the manifest
    again: neither may open the FIFO."""
    import hashlib

    pipe = make_pipe(complete_when="manifest", manifest="*.sha256", after="delete", after_hold="0s")
    files = {"a.dat": b"a" * 300, "b.dat": b"b" * 400}
    man = pipe.root / "run1" / "files.sha256"
    with pipe:
        man.parent.mkdir()
        for rel, data in files.items():
            (man.parent / rel).write_bytes(data)
        man.write_bytes("".join(f"{hashlib.sha256(d).hexdigest()}  {r}\n" for r, d in files.items()).encode())
        wait_queued(pipe, 3)
        _to_fifo(man)
        rescuer.paths.append(man)
        deadline = time.monotonic() + 8  # workers: the files, then the directory's check (every few seconds)
        while time.monotonic() < deadline:
            pipe.work()
            time.sleep(0.2)
    with pipe:  # a new daemon loads the pending directory, manifest and all
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            pipe.work()
            time.sleep(0.2)
        assert pipe.daemon is not None and pipe.daemon.daemon is not None
    assert not rescuer.rescued, "the daemon or a worker blocked opening the FIFO"
    assert checksums(pipe) == {f"run1/{r}": sha2(d) for r, d in files.items()}
    for rel in files:  # the set is not complete (its manifest is not a file): nothing of it is deleted
        assert (man.parent / rel).exists()


@pytest.mark.parametrize("after_", ["delete", "move-same-device", "move-other-device"])
def test_a_fifo_swapped_in_just_before_the_after_action_is_never_opened(
        make_pipe: Any, rescuer: FifoRescuer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, after_: str) -> None:
    """Verified, checked, then (between the after-action's last look and its act) the file becomes a FIFO:
    delete and move leave it alone (a move to another device copies the file: it must not open the FIFO)."""
    import shutil
    import tempfile

    from irods_ingestd.ingest import after

    zone: dict[str, Any] = {"after": "delete" if after_ == "delete" else "move", "after_hold": "0s"}
    other = Path(tempfile.mkdtemp(prefix="ingestd-adv-", dir="/dev/shm")) if after_ == "move-other-device" \
        else tmp_path / "done"
    if after_ != "delete":
        zone["move_to"] = str(other)
    pipe = make_pipe(**zone)
    f = pipe.root / "leaving.dat"
    real = after.fsops.open_for_writing
    armed = [True]

    def look_then_swap(path: str) -> bool | None:
        out = real(path)
        if armed and path.endswith("leaving.dat"):
            armed.clear()
            _to_fifo(Path(path))
            rescuer.paths.append(Path(path))
        return out

    monkeypatch.setattr(after.fsops, "open_for_writing", look_then_swap)
    try:
        with pipe:
            f.write_bytes(b"L" * 700)
            until(pipe, lambda: not armed and pipe.quiet(), 30, "the ingest and the after-action")
            time.sleep(1.0)
            pipe.work()
        assert not rescuer.rescued, "the after-action blocked opening the FIFO"
        assert checksums(pipe) == {"leaving.dat": sha2(b"L" * 700)}
        assert f.is_fifo() or any(p.is_fifo() for p in pipe.root.iterdir()), "the FIFO was removed or moved"
        if after_ != "delete":
            assert not other.exists() or not [p for p in other.rglob("*") if p.is_file()], list(other.rglob("*"))
    finally:
        if after_ == "move-other-device":
            shutil.rmtree(other, ignore_errors=True)


@pytest.mark.parametrize("after_", ["keep", "delete"])
def test_a_directory_swapped_for_a_symlink_never_leads_the_worker_outside(make_pipe: Any, tmp_path: Path,
                                                                           after_: str) -> None:
    """d/a was queued; then d became a symlink to a directory outside the zone holding an `a` of the same size
    and mtime. The zone does not follow symlinks: the outside file must be neither ingested nor deleted."""
    outside = tmp_path / "outside"
    outside.mkdir()
    pipe = make_pipe(after=after_, after_hold="0s")
    d = pipe.root / "d"
    with pipe:
        d.mkdir()
        (d / "a").write_bytes(b"inside!" * 100)
        wait_queued(pipe, 1)
        st = (d / "a").stat()
        (outside / "a").write_bytes(b"SECRET!" * 100)
        os.utime(outside / "a", ns=(st.st_atime_ns, st.st_mtime_ns))
        (d / "a").unlink()
        d.rmdir()
        os.symlink(outside, d)
        until(pipe, lambda: pipe.quiet(), 30, "the worker to be done with d/a")
        time.sleep(1.5)
        pipe.drain()
    assert (outside / "a").read_bytes() == b"SECRET!" * 100, "a file outside the zone was deleted"
    assert sha2(b"SECRET!" * 100) not in checksums(pipe).values(), "a file outside the zone was ingested"
    assert checksums(pipe) == {}


def test_special_files_that_become_regular_files_are_ingested(make_pipe: Any, tmp_path: Path, caplog: Any) -> None:
    """A FIFO, a socket, a dangling symlink and a symlink loop, each skipped (and reported once) by the walk,
    then replaced by a regular file of the same name: each is ingested then, whatever was reported before."""
    import socket

    pipe = make_pipe()
    r = pipe.root
    sock = socket.socket(socket.AF_UNIX)
    with pipe:
        os.mkfifo(r / "fifo")
        sock.bind(str(r / "sock"))
        os.symlink(r / "nowhere", r / "dangling")
        os.symlink(r / "loop2", r / "loop1")
        os.symlink(r / "loop1", r / "loop2")
        (r / "first").write_bytes(b"first")
        wait_done(pipe, 1)
        time.sleep(2.5)  # rescans: each special file seen (and reported) a few times
        pipe.work()
        sock.close()
        for n in ("fifo", "sock", "dangling", "loop1"):
            (r / n).unlink()
            tmp = r / f".{n}.Ab12Cd"
            tmp.write_bytes(n.encode())
            os.rename(tmp, r / n)
        until(pipe, lambda: pipe.ledger.stats("z")["done"] >= 5, 30, "the four files that were special")
        pipe.drain()
    assert checksums(pipe) == {"first": sha2(b"first"), **{n: sha2(n.encode()) for n in ("fifo", "sock",
                                                                                          "dangling", "loop1")}}


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
