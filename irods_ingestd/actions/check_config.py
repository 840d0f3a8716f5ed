"""`irods-ingestd check-config`: validate the file, then check that Redis and iRODS answer.

Exits non-zero on any problem, listing each one. `--offline` only validates the file (the unit's
ExecStartPre uses it, so a Redis or iRODS outage does not keep the daemon from starting and waiting).
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path
from typing import Any

from ..config import Config, file_is_private, load
from ..daemonclaims import running_overlaps
from ..ingest import access, catalog
from ..register_check import zone_vault_problems

log = logging.getLogger(__name__)


def security_problems(cfg: Config) -> list[str]:
    """Secrets readable by other users are refused."""
    out = []
    if cfg.irods.password and not file_is_private(Path(cfg.source)):
        out.append(f"{cfg.source} holds [irods].password and is readable by other users: "
                   "chmod o-r it, or use password_file / LoadCredential=")
    if cfg.irods.password_file is not None and cfg.irods.password_file.exists() and \
            not file_is_private(cfg.irods.password_file):
        out.append(f"{cfg.irods.password_file} (the iRODS password) is readable by other users: chmod o-r it")
    return out



def nearest_collection(session: Any, collection: str) -> str | None:
    """The collection itself or its nearest existing ancestor (workers create the missing levels below
    it, as deep as needed); None if not even the iRODS zone's root exists."""
    path = collection
    while path and path != "/":
        if session.collections.exists(path):
            return path
        path = path.rsplit("/", 1)[0]
    return None


def check_services(cfg: Config) -> list[str]:
    problems = []
    from ..redisconn import connect
    try:
        r = connect(cfg.redis)
        r.ping()
        problems += running_overlaps(r, cfg.redis.prefix, socket.gethostname(), cfg.zones)
    except Exception as e:  # noqa: BLE001 - any failure is reported as such
        problems.append(f"Redis at {cfg.redis.url}: {e}")
    from ..irods_session import login_refused, make_session

    session = None
    try:
        session = make_session(cfg.irods)
        try:
            for z in cfg.zones:
                if nearest_collection(session, z.collection) is None:
                    problems.append(f"zone {z.name!r}: no part of {z.collection} exists in iRODS (not even "
                                    f"/{z.collection.split('/')[1]}); is the iRODS zone name right?")
                problems += access.config_problems(session, z.name, z.access)  # acl names, replicate_to
            problems += zone_vault_problems(cfg.zones, lambda resc: catalog.vault_paths(session, resc))
        finally:
            session.cleanup()
    except Exception as e:  # noqa: BLE001
        refused = login_refused(e, session)
        problems.append(f"iRODS: {refused}" if refused else f"iRODS: {type(e).__name__}: {e}")
    return problems


def watcher_problems(cfg: Config) -> list[str]:
    """Zones whose watcher this process could not run: fanotify is tried (a group made, the zone's
    filesystem marked, both dropped) with the capabilities check-config runs with, which under systemd
    (ExecStartPre) are the daemon's."""
    from ..watch.fanotify_sys import unavailable

    out = []
    for z in cfg.zones:
        if z.watcher == "fanotify" and z.path.is_absolute():
            why = unavailable(str(z.path))
            if why:
                out.append(f"zone {z.name!r}.watcher = \"fanotify\": {why}")
    return out


def register_warnings(cfg: Config) -> list[str]:
    """Register zones the iRODS service account on this host could not read (a hint: the server may run
    elsewhere, and ACLs are beyond the mode bits)."""
    from ..register_check import unreadable_for_service_account

    out = []
    for z in cfg.zones:
        if z.mode == "register":
            why = unreadable_for_service_account(z.path)
            if why:
                out.append(f"warning: zone {z.name!r} (mode = \"register\"): {why}")
    return out


def run(args: argparse.Namespace) -> int:
    cfg = load(args.config, check_paths=not args.offline)
    problems = security_problems(cfg) + watcher_problems(cfg)
    if not args.offline:
        problems += check_services(cfg)
    for w in register_warnings(cfg):
        sys.stderr.write(f"{w}\n")
    for p in problems:
        sys.stderr.write(f"{p}\n")
    if problems:
        return 1
    sys.stdout.write(f"{cfg.source}: OK ({len(cfg.zones)} zones: {', '.join(z.name for z in cfg.zones)})\n")
    return 0
