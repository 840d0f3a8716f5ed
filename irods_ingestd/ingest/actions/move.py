"""after = "move": the verified landing file goes below ``move_to`` under its relative path, never over a
file already there (``name.~N~`` then); across devices the copy is checked against the verified SHA-256."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil

from ... import fsops
from ...job import ZoneSpec
from ..after import Changed, Verified, private, put_back, take_aside

log = logging.getLogger("irods_ingestd.ingest")


def _copy_checked(src: str, dest_dir: str, name: str, item: Verified) -> str:
    """Copy src into dest_dir under a private name; its SHA-256 must be the verified one."""
    tmp = private(os.path.join(dest_dir, name), "move")
    h = hashlib.sha256()
    nonblocking = lambda p, m: os.open(p, m | os.O_NONBLOCK)  # noqa: E731 - a FIFO swapped in: fstat says so
    with open(src, "rb", opener=nonblocking) as fin:
        if not item.same(os.fstat(fin.fileno())):  # before anything is made in move_to
            raise Changed("changed before it could be copied to move_to")
        try:  # a partial copy (a full move_to, an I/O error) never stays behind in move_to
            with open(tmp, "xb") as fout:
                while chunk := fin.read(8 << 20):
                    h.update(chunk)
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            shutil.copystat(src, tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    if h.hexdigest() != item.sha256:
        os.unlink(tmp)
        raise Changed("its bytes differ from the verified copy")
    return tmp


def _outside_the_zone(zone: ZoneSpec, dest_dir: str) -> None:
    """check-config refuses a move_to inside the zone; a directory below it may still be made later as a symlink
    into the zone (done/run -> landing/run): the file would come back as a new one, ingested again, endlessly."""
    real, root = os.path.realpath(dest_dir), os.path.realpath(zone.root)
    if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
        raise OSError(errno.ELOOP, f"{dest_dir} leads back into the zone (to {real}): not moved there", dest_dir)


def run(zone: ZoneSpec, item: Verified, path: str) -> None:
    assert zone.move_to
    dest = os.path.join(zone.move_to, item.rel)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    _outside_the_zone(zone, os.path.dirname(dest))
    try:
        target = fsops.rename_to_free_name(path, dest)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        tmp = _copy_checked(path, os.path.dirname(dest), os.path.basename(dest), item)
        try:
            aside = take_aside(item, path, "del", zone.follow_symlinks)
        except BaseException:  # replaced meanwhile, or gone: the copy is not to be kept
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.unlink(aside)
        put_back(tmp, dest)
        return
    if not item.same(os.stat(target, follow_symlinks=zone.follow_symlinks)):  # swapped in at the last moment
        put_back(target, path)
        raise Changed("replaced after verification")
    if target != dest:
        log.info("zone %s: %s already existed; moved as %s", zone.name, dest, os.path.basename(target))
