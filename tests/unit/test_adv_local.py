"""The worker's look at a landing file (ingest/local.py) against files swapped under it: a FIFO never blocks,
another file is never read as the one looked at, and an in-place rewrite with its mtime set back is seen."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from irods_ingestd import checksums
from irods_ingestd.ingest import after, local
from irods_ingestd.ingest.errors import LocalChanged, Vanished
from irods_ingestd.job import FileItem


def _loc(p: Path, follow: bool = False) -> local.Local:
    return local.Local(str(p), os.stat(p, follow_symlinks=follow), follow)


def _in_thread(fn, timeout: float = 5.0) -> BaseException | None:  # type: ignore[no-untyped-def]
    """Run fn in a thread; fail the test if it is still blocked after timeout (a FIFO's open)."""
    out: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            out.append(None)
        except BaseException as e:  # noqa: BLE001
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        fd = os.open(fn.fifo, os.O_WRONLY | os.O_NONBLOCK)  # release it before failing
        os.close(fd)
        t.join(5)
        pytest.fail("blocked opening a FIFO")
    return out[0]


@pytest.mark.parametrize("how", ["open_checked", "digest"])
def test_a_fifo_swapped_in_after_the_stat_never_blocks(tmp_path: Path, how: str) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    loc = _loc(p)
    p.unlink()
    os.mkfifo(p)

    def go() -> None:
        if how == "open_checked":
            local.open_checked(loc)
        else:
            local.digest(loc, None)

    go.fifo = p  # type: ignore[attr-defined]
    assert isinstance(_in_thread(go), LocalChanged)


def test_the_opener_refuses_another_file_under_the_name(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"one")
    loc = _loc(p)
    assert checksums.file_digest(str(p), (), loc.opener()).sha256 == hashlib.sha256(b"one").digest()
    tmp = tmp_path / "g"
    tmp.write_bytes(b"two")
    os.rename(tmp, p)
    with pytest.raises(LocalChanged):
        checksums.file_digest(str(p), (), loc.opener())


def test_a_same_size_rewrite_with_the_mtime_set_back_is_a_change(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"aaaa")
    loc = _loc(p)
    st = p.stat()
    p.write_bytes(b"bbbb")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(LocalChanged):
        local.recheck(loc)
    with pytest.raises(LocalChanged):
        local.open_checked(loc)


def test_a_directory_above_that_became_a_file_is_vanished(tmp_path: Path) -> None:
    from irods_ingestd.job import ZoneSpec

    (tmp_path / "d").write_bytes(b"a file where the directory was")
    zone = ZoneSpec(name="z", root=str(tmp_path), collection="/tempZone/home/rods/z")
    with pytest.raises(Vanished):
        local.check_local(zone, FileItem("d/a", 1, 1))


def test_after_reads_a_file_again_only_when_its_ctime_moved(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"aaaa")
    st = p.stat()
    v = after.Verified("f", 4, st.st_mtime_ns, st.st_dev, st.st_ino, hashlib.sha256(b"aaaa").hexdigest(),
                       st.st_ctime_ns)
    assert after.same_bytes(v, str(p))
    p.write_bytes(b"bbbb")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert v.same(p.stat()) and not after.same_bytes(v, str(p))


def test_no_after_action_through_a_directory_swapped_for_a_symlink(tmp_path: Path) -> None:
    """d/a verified; then d moved out of the zone and a symlink put in its place: the very file (same inode)
    is outside now, and a zone that does not follow symlinks never deletes it there."""
    from irods_ingestd.job import ZoneSpec

    root, outside = tmp_path / "zone", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    outside.mkdir()
    (root / "d" / "a").write_bytes(b"aaaa")
    st = (root / "d" / "a").stat()
    v = after.Verified("d/a", 4, st.st_mtime_ns, st.st_dev, st.st_ino, hashlib.sha256(b"aaaa").hexdigest(),
                       st.st_ctime_ns)
    os.rename(root / "d", outside / "d")
    os.symlink(outside / "d", root / "d")
    zone = ZoneSpec(name="z", root=str(root), collection="/tempZone/home/rods/z", after="delete")
    outcome, _ = after.run(zone, v)
    assert outcome == after.GONE
    assert (outside / "d" / "a").read_bytes() == b"aaaa"


def test_a_replica_check_reading_the_landing_file_again_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    """min_replicas on an MD5 server reads the verified landing file again for the MD5: a FIFO swapped in
    meanwhile must not block the worker (and is no match)."""
    from irods_ingestd.ingest.replicas import _Expected

    p = tmp_path / "f"
    p.write_bytes(b"aaaa")
    st = p.stat()
    v = after.Verified("f", 4, st.st_mtime_ns, st.st_dev, st.st_ino, hashlib.sha256(b"aaaa").hexdigest(),
                       st.st_ctime_ns)
    p.unlink()
    os.mkfifo(p)
    exp = _Expected(v, str(p), False)

    def go() -> None:
        exp.matches(hashlib.md5(b"aaaa").hexdigest())

    go.fifo = p  # type: ignore[attr-defined]
    assert isinstance(_in_thread(go), OSError)  # not the verified file: the replica is not taken as verified


def test_verified_records_of_other_versions_load() -> None:
    """A record written before ctime_ns existed loads with 0 (its file is hashed again before it goes); one
    with a field a later version added loads without it (rolling upgrades)."""
    old = {"rel": "a", "size": 1, "mtime_ns": 2, "dev": 3, "ino": 4, "sha256": "ab"}
    assert after.Verified.load(old).ctime_ns == 0
    assert after.Verified.load({**old, "ctime_ns": 5, "added_later": 6}) == after.Verified("a", 1, 2, 3, 4, "ab", 5)
