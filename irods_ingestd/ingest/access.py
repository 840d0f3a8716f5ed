"""A zone's ACLs on what it ingests (``acl``, ``inherit``: see :mod:`irods_ingestd.zoneparts.access`).

Two ways, chosen by ``inherit``:

* ``inherit = true``: the rules and the inheritance flag are put on the zone's collection (:func:`prepare`),
  and the server gives every object and collection created below it the collection's ACLs as it creates
  them. Measured on iRODS 5.0.2: an object put under its temporary name in an inheriting collection carries
  the ACLs, and keeps them through the rename; sub-collections inherit the flag; registered objects (one
  call or BULK_DATA_OBJ_REG) inherit too. So no per-object ACL call is sent (each is a catalog write, about
  what an AVU call costs: bench/README.md, "Where a file's time goes"). :func:`prepare` looks at the collection
  once per worker process and zone, again every :data:`RECHECK` seconds (a user or group removed from iRODS,
  or removed and made again, has lost its rules there: files fail meanwhile, as they do without inherit),
  and whenever the worker forgot its collections (after a transient error, e.g. a
  collection removed and created anew); whatever rule or flag is missing there is set recursively, so
  objects and sub-collections ingested before inherit was turned on get them too (once).
* ``inherit = false``: each object gets one ACL call per rule (:func:`grant`): a put's temporary copy before
  its rename (so the final name never shows an object without them), a registered object right after its
  registration, and an object found already present (an earlier try may have stopped between the two). The
  bulk register is skipped for such zones (:func:`bulk_ok`): the rows would carry no ACLs.

In both ways the ACLs are there before the file is recorded as verified, and any failure (a user or group
that does not exist, a service account without ``own``) fails the file with the reason; nothing is skipped
silently.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import irods.exception as iex

from ..job import ZoneSpec
from ..zoneparts.access import CATALOG_LEVEL, Access, Rule, per_object, rules
from . import catalog
from .context import IngestContext
from .errors import PermanentError, describe, is_transient

log = logging.getLogger("irods_ingestd.ingest")

RECHECK = 60.0  # seconds: a worker looks at its zone's collection again (a name removed from iRODS, or removed and
# made again, loses its rules there; an admin may take a rule or the inheritance off)


def _why(zone: ZoneSpec, r: Rule | None, where: str, e: BaseException) -> PermanentError:
    what = f"acl \"{r}\"" if r is not None else "inherit = true"
    if isinstance(e, iex.CAT_INVALID_USER):
        return PermanentError(f"zone {zone.name!r}: {what}: there is no iRODS user or group named {r.who if r else '?'}"
                              f" (create it or change the zone's acl)")
    if isinstance(e, iex.CAT_NO_ACCESS_PERMISSION | iex.CAT_INSUFFICIENT_PRIVILEGE_LEVEL):
        return PermanentError(f"zone {zone.name!r}: {what} on {where}: {describe(e)}: the service account needs "
                              f"own on the zone's collection {zone.collection} (see README, \"Ownership and "
                              f"replicas\")")
    return PermanentError(f"zone {zone.name!r}: {what} on {where}: {describe(e)}")


def _self_problem(session: Any, r: Rule) -> str:
    """A rule that would take the service account's own rights away (read, write or null on itself): the worker
    would lock itself out of what it just made (its temporary copy left behind, or the whole collection)."""
    if r.level == "own" or r.name != str(session.username) or r.zone not in ("", str(session.zone)):
        return ""
    return f"\"{r}\": {r.who} is the iRODS user irods-ingestd runs as; it owns what it makes, and this rule " \
           f"would take that away (drop the rule)"


def _set(session: Any, zone: ZoneSpec, r: Rule, path: str, recursive: bool = False) -> None:
    if why := _self_problem(session, r):
        raise PermanentError(f"zone {zone.name!r}: acl {why}")
    try:
        catalog.set_access(session, path, r.level, r.name, r.zone, recursive=recursive)
    except Exception as e:
        if is_transient(e):
            raise
        raise _why(zone, r, path, e) from None


def grant(session: Any, zone: ZoneSpec, path: str) -> None:
    """The zone's rules on one object, when inheritance does not give them (one call a rule)."""
    if not per_object(zone.access):
        return
    for r in rules(zone.access):
        _set(session, zone, r, path)


def grant_part(session: Any, zone: ZoneSpec, part_path: str) -> None:
    """:func:`grant` on a put's verified temporary copy; one that cannot get them is removed (the file fails)."""
    try:
        grant(session, zone, part_path)
    except PermanentError:
        catalog.unlink_quiet(session, part_path)
        raise


def prepare(ctx: IngestContext, session: Any, zone: ZoneSpec) -> None:
    """``inherit = true``: the zone's collection exists with the inheritance flag and the zone's rules."""
    a = zone.access
    coll = zone.collection
    if not a.inherit:
        return
    checked = ctx.access_ready.get(coll)
    if checked is not None and coll in ctx.known_collections and time.monotonic() - checked < RECHECK:
        return
    ctx.access_ready.pop(coll, None)  # until found in place again (bulk_ok asks)
    catalog.ensure_collection(session, coll, ctx.known_collections, ctx.sleep)
    inherit, have = catalog.collection_access(session, coll)
    local = str(session.zone)
    for r in rules(a):
        level = CATALOG_LEVEL[r.level]
        who = r.name if r.zone in ("", local) else r.who  # as collection_access names it ("name#local" too)
        if have.get(who, "null") != level:
            log.info("zone %s: %s on %s and everything below it", zone.name, r, coll)
            _set(session, zone, r, coll, recursive=True)
    if not inherit:
        log.info("zone %s: inheritance on %s and every collection below it", zone.name, coll)
        try:
            catalog.set_inherit(session, coll, recursive=True)
        except Exception as e:
            if is_transient(e):
                raise
            raise _why(zone, None, coll, e) from None
    ctx.access_ready[coll] = time.monotonic()


_ADMIN: dict[tuple[str, int, str, str], bool] = {}  # (host, port, zone, user) → a rodsadmin?


def _rodsadmin(session: Any) -> bool:
    key = (str(session.host), int(session.port), str(session.zone), str(session.username))
    if key not in _ADMIN:
        _ADMIN[key] = catalog.user_type(session) == "rodsadmin"
    return _ADMIN[key]


def bulk_ok(ctx: IngestContext, zone: ZoneSpec) -> bool:
    """The bulk register may take this zone's files now: no per-object ACLs, the collection prepared, and the
    service account a rodsadmin. iRODS 5.0.2 lets a rodsuser register any path the server can read through
    BULK_DATA_OBJ_REG, which the server's path policy (acSetChkFilePathPerm) does not see: for anyone else the
    one-call register asks the server, whose policy decides."""
    a = zone.access
    return not per_object(a) and (not a.inherit or zone.collection in ctx.access_ready) and \
        _rodsadmin(ctx.sessions.get())


def config_problems(session: Any, zone_name: str, a: Access) -> list[str]:
    """check-config with iRODS answering: every acl name is a user or group, every replicate_to a resource."""
    where = f"zone {zone_name!r}"
    out = []
    rs = rules(a)
    local = session.zone
    found = catalog.principals(session, [r.name for r in rs])
    for r in rs:
        if (r.name, r.zone or local) not in found:
            out.append(f"{where}.acl: \"{r}\": there is no iRODS user or group named {r.who}")
        elif why := _self_problem(session, r):
            out.append(f"{where}.acl: {why}")
    for resc in a.replicate_to:
        try:
            catalog.resource_id(session, resc)
        except PermanentError:
            out.append(f"{where}.replicate_to: there is no iRODS resource named {resc!r}")
    return out
