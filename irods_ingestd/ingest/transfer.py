"""Moving a file's bytes (put) or its path (register) into iRODS, verified in the server's scheme and
given its AVUs; the put leaves the verified copy under its temporary name (see :mod:`.attempt`)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import irods.exception as iex

from .. import checksums, names
from ..checksums import Digest
from ..job import ZoneSpec
from ..register_check import vault_refusal
from . import catalog, local
from .context import IngestContext
from .errors import LocalChanged, PermanentError, is_transient
from .local import Local

log = logging.getLogger("irods_ingestd.ingest")


def copy_stream(session: Any, loc: Local, dest: str, opts: dict[str, str], schemes: tuple[str, ...]) -> Digest:
    """One stream, any size: read, hash and write chunk by chunk from a descriptor on the very file looked
    at (so a file swapped in meanwhile is never what gets copied)."""
    h = checksums.Hasher(schemes)
    fd = local.open_checked(loc)
    with os.fdopen(fd, "rb", buffering=0) as f, session.data_objects.open(dest, "w", **opts) as o:
        while chunk := f.read(checksums.CHUNK):
            h.update(chunk)
            o.write(chunk)
    return h.digest()


def verify(ctx: IngestContext, loc: Local, dig: Digest, got: str) -> tuple[Digest, bool]:
    """Compare the server's checksum with ours, learning the server's scheme."""
    dig, same, scheme = local.compare(loc, dig, got)
    if scheme is not None:
        ctx.hash_scheme = scheme
    return dig, same


def put(ctx: IngestContext, session: Any, size: int, loc: Local, part: str, opts: dict[str, str],
        avus: list[Any]) -> tuple[Digest, int]:
    """Copy to the temporary name, verify, give it its AVUs: (digest, bytes moved). Whatever fails for good
    leaves no temporary copy behind (a transient error may have taken the connection: the next attempt
    removes it)."""
    try:
        # One stream whatever the size: python-irodsclient's parallel put (above 32 MiB) can wait forever on a
        # thread barrier when the server drops a connection mid-transfer (seen in the chaos campaign); one
        # stream is bound by the session's connection_timeout and fails into a retry instead.
        # regChksum: the server checksums the bytes it stored when the copy is closed (in the same catalog
        # update that finalizes the replica); the answer is then a look-up, not a second read of the file
        dig = copy_stream(session, loc, part, {**opts, "regChksum": ""}, checksums.schemes_for(ctx.hash_scheme))
        got = catalog.stored_checksum(session, part) or catalog.server_checksum(session, part, force=True)
        dig, same = verify(ctx, loc, dig, got)
        if not same:
            local.recheck(loc)  # a file that changed while being read is resettled, not failed
            raise iex.USER_CHKSUM_MISMATCH(f"iRODS has {got or 'no checksum'}, the local file "
                                           f"{local.shown(dig, ctx.hash_scheme)}")
        local.recheck(loc)
        catalog.set_metadata(session, part, avus)
        return dig, size
    except BaseException as e:
        if not is_transient(e):
            try:
                catalog.unlink_quiet(session, part)
            except Exception:  # noqa: BLE001
                pass
        raise


def register_refusal(session: Any, realpath: str, resource: str = "") -> str | None:
    """Why this landing file cannot be registered on `resource` ("": the server's default) (a name the
    protocol cannot carry, too long a path, a path inside the vault of a resource on its host), or None."""
    resource = resource or getattr(session, "default_resource", "") or ""
    server = f"{getattr(session, 'host', '')}:{getattr(session, 'port', '')}/{getattr(session, 'zone', '')}/{resource}"
    return names.register_refusal(realpath) or \
        vault_refusal(realpath, lambda: catalog.vault_paths(session, resource), server)


SERVER_READ_SECONDS = 600.0  # how long one registration shows the server reaches a zone's directory
_server_read: dict[tuple[str, str], float] = {}  # (zone, its real root) → when the server registered a file of it


def server_has_read(zone: ZoneSpec) -> bool:
    """Was the server seen (by this worker process, lately) to reach this zone's directory? It stats, opens
    and checksums a file it registers one call a file; the bulk rows, which it does not read, are sent only
    for such a zone, so a worker that cannot tell from the bits (no service account on its host) never
    registers paths the server does not see (not mounted there, not searchable); asked again every
    SERVER_READ_SECONDS (a batch then goes the one-call way), so an unmount there is noticed."""
    seen = _server_read.get((zone.name, os.path.realpath(zone.root)))
    return seen is not None and time.monotonic() - seen < SERVER_READ_SECONDS


def register(ctx: IngestContext, session: Any, loc: Local, path: str, aside: str | None,
             existing_here: bool, dig: Digest | None, opts: dict[str, str], avus: list[Any],
             zone: ZoneSpec | None = None) -> Digest:
    """Register the landing file's real path at `path` and verify it. An earlier registration of the same
    path is unregistered first (`existing_here`); another object under the name was set aside to `aside`
    and is put back if this fails."""
    realpath = os.path.realpath(loc.path)
    if existing_here:
        catalog.unregister(session, path)
    try:
        if dig is None:
            dig = local.digest(loc, ctx.hash_scheme)
        catalog.register(session, realpath, path, opts)
    except BaseException:  # refused (nothing stays registered: catalog.register) or cut off: put back what was
        if aside:  # set aside, or the next attempt does (attempt._look)
            try:
                catalog.rename(session, aside, path)
            except Exception as e:  # noqa: BLE001 - the register's own error is the one to report
                log.warning("%s: could not put back %s after its registration failed (%s); the next attempt "
                            "does", path, aside, e)
        raise
    if zone is not None:
        _server_read[(zone.name, os.path.realpath(zone.root))] = time.monotonic()
    got = catalog.stored_checksum(session, path) or catalog.server_checksum(session, path)
    try:
        dig, same = verify(ctx, loc, dig, got)
        if not same:
            local.recheck(loc)
            raise PermanentError(f"checksum mismatch after register: iRODS {got or 'none'}, "
                                 f"local {local.shown(dig, ctx.hash_scheme)}")
        local.recheck(loc)
    except (LocalChanged, PermanentError):
        catalog.unregister(session, path)
        if aside:
            catalog.rename(session, aside, path)
        raise
    tag_registered(session, path, avus, aside)
    return dig


def tag_registered(session: Any, path: str, avus: list[Any], aside: str | None = None) -> None:
    """The AVUs of an object just registered, or no object: a failed AVU call unregisters it again (which
    never touches the landing file) and puts back what was set aside, so nothing stays half-tagged. Where
    the unregistering fails too (the connection is gone), the file's next attempt finds the object and
    adds the AVUs it lacks (:func:`missing_avus`)."""
    try:
        catalog.set_metadata(session, path, avus)
    except BaseException:
        try:
            catalog.unregister(session, path)
            if aside:
                catalog.rename(session, aside, path)
        except Exception as e:  # noqa: BLE001 - the AVU call's own error is the one to report
            log.warning("%s: could not unregister it after its AVUs failed (%s); the next attempt adds them",
                        path, e)
        raise


def missing_avus(expected: list[Any], present: dict[str, str]) -> list[Any]:
    """The AVUs of a registered object that its AVU call never set: all of them when none of their
    attributes is on the object (the call is atomic: all or nothing went in), else none. Compared by
    attribute, as some values differ from one attempt to the next (ingest time, host)."""
    return [] if any(m.name in present for m in expected) else list(expected)
