"""Run a piece of a test with another user's file-system rights, in this thread only (setfsuid).

CI runs as root, and root reads every file; a landing file or directory the service user cannot read
needs the service user's rights. setfsuid(2) changes only the rights used for file access, only in
the calling thread, and clears root's file-system capabilities while it is not 0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

NOBODY = 65534
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _set(uid: int, gid: int) -> None:
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    if _libc.setfsuid(-1) != uid:  # setfsuid returns the previous value; -1 only reads it
        raise OSError(ctypes.get_errno(), f"setfsuid({uid}) did not take")


@contextmanager
def fs_user(uid: int = NOBODY, gid: int = NOBODY) -> Iterator[None]:
    """File access in this thread as uid/gid; needs root (else the test is skipped by the caller)."""
    old_uid, old_gid = os.geteuid(), os.getegid()
    _set(uid, gid)
    try:
        yield
    finally:
        _set(old_uid, old_gid)


def can_switch() -> bool:
    return os.geteuid() == 0
