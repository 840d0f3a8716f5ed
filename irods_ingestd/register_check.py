"""Can the iRODS server read a register zone? (check-config's warning) Is a path inside a resource's vault?

Register mode asks the server to stat, open and checksum the landing file itself, as its service account
on the host of the zone's resource (``irods`` by default). When that account exists on this host, its
rights on the zone directory are worked out from the mode bits (search on every directory above it, read
and search on the zone itself); a zone it cannot reach would fail every file with UNIX_FILE_STAT_ERR.
ACLs and root squash are beyond what the bits say: the warning is a hint, not a verdict.

A file inside a resource's vault is never registered (and check-config refuses a zone that overlaps a vault):
the server takes a replica in its vault for one of its own, so an ``irm`` of the object unlinks the landing
file and an ``imv`` renames it (measured on iRODS 5.0.2; outside a vault it only unregisters). A rodsadmin's
register is not refused by the server there.
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


def _has_acl(path: str) -> bool:
    try:
        os.getxattr(path, "system.posix_acl_access", follow_symlinks=False)
    except OSError:  # ENODATA: none; ENOTSUP: a file system without POSIX ACLs
        return False
    return True


def bits_decide(path: str) -> bool:
    """Do the mode bits alone decide who may read this file: no POSIX ACL on it or on a directory above it
    (the directories' answers cached)? Where one is, only the server can tell (an entry may deny its account
    what the bits allow): the bulk register, where the server reads nothing, must not take the file."""
    if _has_acl(path):
        return False
    d = os.path.dirname(path)
    while True:
        if _cached(("acl", d, ""), lambda d=d: _has_acl(d)):  # type: ignore[misc]
            return False
        parent = os.path.dirname(d)
        if parent == d:
            return True
        d = parent


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


def _within(path: str, top: str) -> bool:
    return os.path.commonpath([path, top]) == top


def vault_holding(path: str, vaults: dict[str, str]) -> tuple[str, str] | None:
    """(resource, vault) of a resource whose vault holds `path` (both taken as real paths on this host)."""
    real = os.path.realpath(path)
    for resc, vault in sorted(vaults.items()):
        if _within(real, os.path.realpath(vault)):
            return resc, vault
    return None


def vault_within(path: str, vaults: dict[str, str]) -> tuple[str, str] | None:
    """(resource, vault) of a resource whose vault is below `path` (a zone holding a vault)."""
    real = os.path.realpath(path)
    for resc, vault in sorted(vaults.items()):
        if _within(os.path.realpath(vault), real):
            return resc, vault
    return None


VAULT_REFUSAL = ("register mode cannot register this file: it is inside the vault of iRODS resource {resc!r} "
                 "({vault}), where the server takes it for a replica of its own (an irm of the object would "
                 "delete the landing file, an imv move it); register files outside every resource's vault")


def vault_refusal(realpath: str, fetch: Callable[[], dict[str, str]], server: str = "") -> str | None:
    """Why `realpath` may not be registered (inside a vault), or None; the vaults of `server` (`fetch`:
    resource → vault path) are asked again after CACHE_SECONDS."""
    hit = vault_holding(realpath, _cached(("vaults", server, ""), fetch))
    return VAULT_REFUSAL.format(resc=hit[0], vault=hit[1]) if hit else None


def zone_vault_problems(zones: Any, vaults_near: Callable[[str], dict[str, str]]) -> list[str]:
    """check-config: zones inside a resource's vault or holding one (`zones`: ZoneConfig-likes with name,
    path, mode, resource; `vaults_near(resource)`: the vaults of the resources on its host). In register mode
    the server would take the files for its own replicas; in put mode the zone would ingest the vault's own
    files (and delete or move them with its after-action), or its objects would land in the zone and be
    ingested again."""
    out = []
    for z in zones:
        vaults = vaults_near(getattr(z, "resource", ""))
        hit = vault_holding(str(z.path), vaults)
        where = "inside the vault" if hit else "holding the vault"
        hit = hit or vault_within(str(z.path), vaults)
        if hit:
            why = ("the server would take its registered files for replicas of its own (an irm of an object "
                   "would delete its landing file)" if z.mode == "register" else
                   "the zone would ingest iRODS' own replicas, or its objects be stored back into the zone")
            out.append(f"zone {z.name!r}.path: {z.path} is {where} of iRODS resource {hit[0]!r} ({hit[1]}): "
                       f"{why}; use a landing directory outside every resource's vault")
    return out
