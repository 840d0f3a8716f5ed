"""The fanotify system calls through ctypes (libc), the event parser, and the probe `check-config` runs.

Only what the fanotify backend needs: a notification group reporting directory file handles and names
(`FAN_REPORT_DFID_NAME`, Linux ≥ 5.9), filesystem marks (`FAN_MARK_FILESYSTEM`, CAP_SYS_ADMIN), and
`name_to_handle_at` (no privilege) to learn the handle of a directory the walk is about to list. Events
carry no file descriptor (`FAN_NOFD`), so nothing is opened per event and nothing must be closed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

# fanotify_init flags
FAN_CLOEXEC = 0x1
FAN_CLASS_NOTIF = 0x0
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
# fanotify_mark flags
FAN_MARK_ADD = 0x1
FAN_MARK_REMOVE = 0x2
FAN_MARK_FILESYSTEM = 0x100
# events
FAN_MODIFY = 0x2
FAN_ATTRIB = 0x4
FAN_CLOSE_WRITE = 0x8
FAN_MOVED_FROM = 0x40
FAN_MOVED_TO = 0x80
FAN_CREATE = 0x100
FAN_DELETE = 0x200
FAN_Q_OVERFLOW = 0x4000
FAN_ONDIR = 0x40000000
# info records
FAN_EVENT_INFO_TYPE_DFID_NAME = 2
FAN_EVENT_INFO_TYPE_DFID = 3

# As inotify's DIR_MASK (watch/inotify.py): no FAN_MODIFY (one per write(); the settler needs none).
MARK_MASK = (FAN_CLOSE_WRITE | FAN_ATTRIB | FAN_CREATE | FAN_MOVED_TO | FAN_MOVED_FROM | FAN_DELETE
             | FAN_ONDIR)
INIT_FLAGS = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_REPORT_DFID_NAME
MAX_HANDLE_SZ = 128
AT_FDCWD = -100
AT_SYMLINK_FOLLOW = 0x400  # a zone path that is a symlink: the directory's handle, as events name it

_META = struct.Struct("=IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
_INFO = struct.Struct("=BBH")  # info_type, pad, len
_META_VERSION = 3

_libc = ctypes.CDLL(None, use_errno=True)
_init = _libc.fanotify_init
_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_init.restype = ctypes.c_int
_mark = _libc.fanotify_mark
_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
_mark.restype = ctypes.c_int
_n2h = _libc.name_to_handle_at
_n2h.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
_n2h.restype = ctypes.c_int


def _raise(what: str, path: str | None = None) -> None:
    e = ctypes.get_errno()
    raise OSError(e, f"{what}: {os.strerror(e)}", path)


CAP_SYS_ADMIN = 21


def has_sys_admin() -> bool:
    """CAP_SYS_ADMIN in this process's effective set (a filesystem mark needs it; since Linux 5.13 an
    unprivileged `fanotify_init` succeeds, and only the mark is refused)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def init() -> int:
    """A new notification group (a file descriptor to read events from)."""
    fd = _init(INIT_FLAGS, os.O_RDONLY | os.O_CLOEXEC)
    if fd < 0:
        _raise("fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME)")
    return fd


def mark_filesystem(fd: int, path: str, remove: bool = False) -> None:
    """Mark (or unmark) the whole filesystem holding `path`."""
    flags = (FAN_MARK_REMOVE if remove else FAN_MARK_ADD) | FAN_MARK_FILESYSTEM
    if _mark(fd, flags, MARK_MASK, AT_FDCWD, os.fsencode(path)) < 0:
        _raise("fanotify_mark(FAN_MARK_FILESYSTEM)", path)


def fsid_of(path: str) -> bytes:
    """The filesystem id as events report it (`__kernel_fsid_t`, two 32-bit words)."""
    return struct.pack("=Q", os.statvfs(path).f_fsid)


def handle_key(path: str) -> bytes:
    """The key events name a directory by: fsid, then the `struct file_handle` (bytes, type, handle)."""
    buf = ctypes.create_string_buffer(8 + MAX_HANDLE_SZ)
    struct.pack_into("=Ii", buf, 0, MAX_HANDLE_SZ, 0)
    mount_id = ctypes.c_int()
    if _n2h(AT_FDCWD, os.fsencode(path), buf, ctypes.byref(mount_id), AT_SYMLINK_FOLLOW) < 0:
        _raise("name_to_handle_at", path)
    nbytes = struct.unpack_from("=I", buf, 0)[0]
    return fsid_of(path) + buf.raw[:8 + nbytes]


def parse(buf: bytes) -> list[tuple[int, bytes, str]]:
    """Events in a read buffer as (mask, directory key, name); an overflow as (FAN_Q_OVERFLOW, b"", "")."""
    out: list[tuple[int, bytes, str]] = []
    off, end = 0, len(buf)
    meta, info = _META.unpack_from, _INFO.unpack_from
    while off + 24 <= end:
        event_len, vers, _r, meta_len, mask, _fd, _pid = meta(buf, off)
        if vers != _META_VERSION or event_len < meta_len:
            raise OSError(errno.EPROTO, f"fanotify metadata version {vers} (expected {_META_VERSION})")
        if mask & FAN_Q_OVERFLOW:
            out.append((FAN_Q_OVERFLOW, b"", ""))
        else:
            rec = off + meta_len
            itype, _pad, ilen = info(buf, rec)
            if itype in (FAN_EVENT_INFO_TYPE_DFID_NAME, FAN_EVENT_INFO_TYPE_DFID):
                hbytes = struct.unpack_from("=I", buf, rec + 12)[0]
                kend = rec + 20 + hbytes
                name = ""
                if itype == FAN_EVENT_INFO_TYPE_DFID_NAME:
                    raw = buf[kend:rec + ilen]
                    name = os.fsdecode(raw[:raw.index(b"\0")] if b"\0" in raw else raw)
                out.append((mask, buf[rec + 4:kend], name))
        off += event_len
    return out


def unavailable(path: str) -> str | None:
    """Why a fanotify zone at `path` cannot be watched by this process, or None if it can: a group is
    created and the filesystem marked (then both are dropped), as the daemon would do (for a directory
    not made yet: its nearest existing parent)."""
    try:
        fd = init()
    except OSError as e:
        if e.errno == errno.EPERM:
            return ("fanotify_init was refused (EPERM): the daemon needs CAP_SYS_ADMIN for a filesystem mark "
                    "(systemd: AmbientCapabilities=CAP_SYS_ADMIN, see packaging/systemd/fanotify.conf.example)")
        if e.errno in (errno.EINVAL, errno.ENOSYS):
            return (f"this kernel ({os.uname().release}) has no fanotify with FAN_REPORT_DFID_NAME "
                    f"({errno.errorcode.get(e.errno, e.errno)}; Linux 5.9 or later is needed)")
        return f"fanotify_init failed: {e.strerror}"
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)  # a zone directory made later: its filesystem is likely its parent's
    try:
        mark_filesystem(fd, path)
        handle_key(path)
    except OSError as e:
        code = errno.errorcode.get(e.errno or 0, str(e.errno))
        if e.errno == errno.EPERM:
            return ("fanotify_mark(FAN_MARK_FILESYSTEM) was refused (EPERM): the daemon needs CAP_SYS_ADMIN "
                    "(missing here; systemd: AmbientCapabilities=CAP_SYS_ADMIN, see "
                    "packaging/systemd/fanotify.conf.example)")
        if e.errno in (errno.EXDEV, errno.EOPNOTSUPP, errno.ENODEV, errno.EINVAL):
            return (f"its filesystem cannot be marked with file handles ({code}: a btrfs subvolume, a "
                    f"filesystem without a unique fsid or without file handles, e.g. NFS/FUSE); use "
                    f"watcher = \"inotify\" or \"poll\"")
        return f"fanotify_mark(FAN_MARK_FILESYSTEM) failed: {code} {e.strerror}"
    finally:
        os.close(fd)
    return None
