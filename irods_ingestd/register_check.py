"""Can the iRODS server read a register zone? (check-config's warning)

Register mode asks the server to stat, open and checksum the landing file itself, as its service account
on the host of the zone's resource (``irods`` by default). When that account exists on this host, its
rights on the zone directory are worked out from the mode bits (search on every directory above it, read
and search on the zone itself); a zone it cannot reach would fail every file with UNIX_FILE_STAT_ERR.
ACLs and root squash are beyond what the bits say: the warning is a hint, not a verdict.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = "irods"


def _allowed(st: os.stat_result, uid: int, gids: set[int], want: int) -> bool:
    """want: a combination of 4 (read) and 1 (search/execute), as for `other`."""
    if uid == 0:
        return True
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == uid:
        bits = mode >> 6
    elif st.st_gid in gids:
        bits = mode >> 3
    else:
        bits = mode
    return bits & want == want


CACHE_SECONDS = 60.0  # a directory's answer (and the account's groups) is asked again after this long
_CACHE_MAX = 4096
_cache: dict[tuple[str, str, str], tuple[float, Any]] = {}


def _cached(key: tuple[str, str, str], compute: Callable[[], Any]) -> Any:
    """A worker's answers expire: an administrator who fixes (or revokes) a directory's rights is heeded
    within CACHE_SECONDS, not at the worker's next restart."""
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    value = compute()
    _cache[key] = (now, value)
    return value


def _dir_ok(d: str, account: str) -> bool:
    return bool(_cached(("dir", d, account),
                        lambda: unreadable_for_service_account(Path(d), account, want_read=False) is None))


def readable_by_service_account(path: str, st: os.stat_result, account: str = SERVICE_ACCOUNT) -> bool:
    """Could `account` read this file (its directories cached)? True where this host cannot tell."""
    try:
        pw = pwd.getpwnam(account)
    except KeyError:
        return True
    if not _dir_ok(os.path.dirname(path), account):
        return False
    return _allowed(st, pw.pw_uid, _gids(account, pw.pw_gid), 4)


def _gids(account: str, primary: int) -> set[int]:
    return set(_cached(("gids", account, str(primary)),
                       lambda: {primary} | {g.gr_gid for g in grp.getgrall() if account in g.gr_mem}))


def unreadable_for_service_account(path: Path, account: str = SERVICE_ACCOUNT,
                                   want_read: bool = True) -> str | None:
    """Why `account` could not read files under `path`, or None (it can, or there is no such user here)."""
    try:
        pw = pwd.getpwnam(account)
    except KeyError:
        return None
    gids = _gids(account, pw.pw_gid)
    path = Path(os.path.abspath(path))
    for d in [*reversed(path.parents), path]:
        try:
            st = os.stat(d)
        except OSError:
            return None  # reported elsewhere (missing zone)
        want = (4 | 1 if want_read else 1) if d == path else 1
        if not _allowed(st, pw.pw_uid, gids, want):
            need = "read and search" if d == path else "search (x)"
            return (f"the iRODS service account {account!r} on this host has no {need} permission on {d}: "
                    f"register mode would fail every file with UNIX_FILE_STAT_ERR (the server reads the "
                    f"landing files itself)")
    return None
