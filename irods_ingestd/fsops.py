"""Landing-file operations that must never lose or overwrite a file.

* :func:`rename_noreplace`: rename that fails with ``FileExistsError`` instead of replacing the target
  (``renameat2(RENAME_NOREPLACE)``; where the file system lacks it, ``link`` + ``unlink``, which fail the
  same way), so an after-action never overwrites a file in ``move_to``.
* :func:`free_name`: ``name``, else ``name.~1~``, ``name.~2~`` … (GNU's numbered backups), the first
  name not taken; :func:`rename_to_free_name`: the two together (a file or a directory put somewhere,
  never over anything).
* :func:`open_for_writing`: whether any process on this host holds the file open for writing, asked
  of the kernel with a read lease (``F_SETLEASE``: refused with EAGAIN while a writer has it open); where
  leases are not allowed (not the file's owner, no CAP_LEASE, a file system without leases), the
  ``/proc/*/fd`` of the processes this user may inspect. None when neither can tell.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_libc: ctypes.CDLL | None = None


def _renameat2(src: str, dst: str) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(_libc, "renameat2", None)
    if fn is None:
        return errno.ENOSYS
    rc = fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
    return 0 if rc == 0 else ctypes.get_errno()


def rename_noreplace(src: str, dst: str) -> None:
    """Rename src to dst; FileExistsError if dst exists (never replaced); OSError(EXDEV) across devices."""
    err = _renameat2(src, dst)
    if err == 0:
        return
    if err == errno.EEXIST:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        raise OSError(err, os.strerror(err), src, None, dst)
    os.link(src, dst, follow_symlinks=False)  # FileExistsError if taken; EXDEV across devices
    os.unlink(src)


def free_name(path: str, max_tries: int = 10_000) -> str:
    """`path` if nothing is there, else the first free `path.~N~`."""
    if not os.path.lexists(path):
        return path
    for n in range(1, max_tries):
        candidate = f"{path}.~{n}~"
        if not os.path.lexists(candidate):
            return candidate
    raise FileExistsError(errno.EEXIST, "no free numbered name", path)


def rename_to_free_name(src: str, path: str) -> str:
    """Rename src to `path`, never over anything: to the first free ``path.~N~`` if `path` is taken (a name
    taken between the look and the rename: the next free one); where it went. Any other OSError is raised."""
    while True:
        dest = free_name(path)
        try:
            rename_noreplace(src, dest)
            return dest
        except FileExistsError:
            continue


def _lease_says(path: str) -> bool | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as e:
        return True if e.errno == errno.EAGAIN else None  # EACCES/EINVAL: this process may not ask
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def _proc_says(st: os.stat_result) -> bool | None:
    """Scan /proc/*/fd for a descriptor on this inode opened for writing; None if some were hidden."""
    hidden = False
    me = str(os.getpid())
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit() and p != me]
    except OSError:
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except PermissionError:
            hidden = True
            continue
        except OSError:
            continue
        for fd in fds:
            try:
                fst = os.stat(f"/proc/{pid}/fd/{fd}")
                if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    flags = int(f.read().split("flags:", 1)[1].split()[0], 8)
            except (OSError, IndexError, ValueError):
                continue
            if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                return True
    return None if hidden else False


def open_for_writing(path: str) -> bool | None:
    """True if a process on this host has the file open for writing, False if none has, None if unknown."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    said = _lease_says(path)
    return said if said is not None else _proc_says(st)
