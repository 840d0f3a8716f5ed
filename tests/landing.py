"""Landing directories the iRODS server can read (register mode reads the landing file itself).

A real server reads a registered file as its service account (unix user ``irods``), which cannot enter
pytest's root-only temporary directories: ``UNIX_FILE_STAT_ERR``. These helpers open the path to other
users: search (x) on every directory above it, read and search on the directory itself.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def server_readable(path: Path) -> Path:
    """Make `path` (a directory, created if missing) reachable and listable by other users; returns it."""
    path.mkdir(parents=True, exist_ok=True)
    for d in [path, *path.parents]:
        if d == Path("/"):
            break
        mode = stat.S_IMODE(os.stat(d).st_mode)
        want = mode | stat.S_IXOTH | (stat.S_IROTH if d == path else 0)
        if want != mode:
            os.chmod(d, want)
    return path


def remove_collections(server: object, *paths: str) -> None:
    """Remove what a test made in iRODS (the real server keeps everything between runs): each collection
    and whatever it holds, bypassing the trash."""
    with server.session() as s:  # type: ignore[attr-defined]
        for path in paths:
            for p in (path, *(f"{path}{suffix}" for suffix in ("-reg",))):
                try:
                    if s.collections.exists(p):
                        s.collections.remove(p, recurse=True, force=True)
                except Exception:  # noqa: BLE001 - cleanup must not hide the test's own result
                    pass
