"""The landing file: is it still the version the job was made for, where does it lead, what are its
digests, and does the server's checksum match them (in the server's scheme)."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Any

from .. import checksums
from ..checksums import Digest
from ..job import FileItem, ZoneSpec
from .errors import LocalChanged, NotRegular, PermanentError, Vanished


@dataclass
class Local:
    path: str
    st: os.stat_result
    follow: bool = False  # the zone follows symlinks: stat the file a link points to

    def stat(self) -> os.stat_result:
        return os.stat(self.path, follow_symlinks=self.follow)

    def opener(self) -> Any:
        """An `open(..., opener=)` on the very file looked at: it does not follow a link unless the zone does,
        never waits on a FIFO swapped in meanwhile (O_NONBLOCK), and raises LocalChanged for another file."""
        return lambda path, mode: _open_same(self, path, mode)


def check_local(zone: ZoneSpec, item: FileItem) -> Local:
    """The landing file as the job describes it, or LocalChanged / Vanished / NotRegular / PermanentError."""
    path = os.path.join(zone.root, item.rel)
    follow = zone.follow_symlinks
    try:
        st = os.stat(path, follow_symlinks=follow)
    except (FileNotFoundError, NotADirectoryError):  # ENOTDIR: a directory above it is a file now
        raise Vanished() from None
    except OSError as e:
        raise PermanentError(f"cannot stat the local file: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise NotRegular()
    if not follow and via_symlink(zone.root, item.rel):  # its directory is a symlink now: not the queued file
        raise Vanished()
    if follow and not inside(zone.root, path):  # re-pointed since it was queued: where does it lead now?
        raise PermanentError("the symlink now points outside the zone: not ingested")
    if st.st_size != item.size or st.st_mtime_ns != item.mtime_ns:
        raise LocalChanged()
    return Local(path, st, follow)


def via_symlink(root: str, rel: str) -> bool:
    """A directory between the zone's root and the file is a symlink (say, a directory swapped for a link to
    one outside the zone after the walk, which never follows them): stat and open would go through it."""
    parent = os.path.dirname(rel)
    return bool(parent) and os.path.realpath(os.path.join(root, parent)) != \
        os.path.join(os.path.realpath(root), parent)


def inside(root: str, path: str) -> bool:
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """The same file, unchanged: the ctime too, since a rewrite of the same size with its mtime set back
    (os.utime) keeps the other four but cannot set the ctime back."""
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == \
        (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def recheck(local: Local) -> None:
    """LocalChanged unless the file is still exactly the one first looked at."""
    try:
        st = local.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise LocalChanged() from None
    if not same_file(st, local.st):
        raise LocalChanged()


def _open_same(local: Local, path: str, mode: int) -> int:
    """A descriptor on the very file looked at, or LocalChanged. O_NONBLOCK: a FIFO swapped in since the stat
    must not hold the worker in open(2) (the fstat below then tells it from the file looked at); reads of a
    regular file ignore it."""
    try:
        fd = os.open(path, mode | os.O_NONBLOCK | os.O_CLOEXEC | (0 if local.follow else os.O_NOFOLLOW))
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
            raise LocalChanged() from None
        raise
    if not same_file(os.fstat(fd), local.st):
        os.close(fd)
        raise LocalChanged()
    return fd


def open_checked(local: Local) -> int:
    """A read descriptor on the very file looked at (LocalChanged if it was swapped meanwhile)."""
    try:
        return _open_same(local, local.path, os.O_RDONLY)
    except PermissionError as e:
        raise PermanentError(f"unreadable local file: {e.strerror}") from None
    except FileNotFoundError:
        raise LocalChanged() from None


def digest(local: Local, known_scheme: str | None) -> Digest:
    try:
        return checksums.file_digest(local.path, checksums.schemes_for(known_scheme), local.opener())
    except PermissionError as e:
        raise PermanentError(f"unreadable local file: {e.strerror}") from None
    except (FileNotFoundError, NotADirectoryError):
        raise LocalChanged() from None


def compare(local: Local, dig: Digest, got: str) -> tuple[Digest, bool, str | None]:
    """Does the server's checksum `got` match the local file? Returns the digest (extended by the server's
    scheme when it lacked it: the server may have been switched), the answer, and the server's scheme."""
    if not got:
        return dig, False, None
    try:
        scheme = checksums.scheme_of(got)
        dig = dig.extended(got, local.path, local.opener())
    except checksums.UnknownScheme as e:
        raise PermanentError(str(e)) from None
    except PermissionError as e:
        raise PermanentError(f"unreadable local file: {e.strerror}") from None
    except OSError:
        raise LocalChanged() from None
    return dig, dig.matches(got), scheme


def shown(dig: Digest, scheme: str | None) -> str:
    """The digest as the server would write it (its scheme if we have it, else SHA-256)."""
    return dig.irods(scheme if scheme in dig.by_scheme else checksums.SHA2)
