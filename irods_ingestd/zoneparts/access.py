"""Who may read what was ingested (ACLs), and how many replicas an object needs before the landing file goes.

Keys of a ``[[zone]]`` table::

    acl = ["read:lab_readers", "write:alice", "own:lab_admins#otherZone"]   # LEVEL:NAME[#ZONE]
    inherit = true          # ACLs and inheritance on the zone's collection; objects inherit them
    min_replicas = 2        # after = delete/move waits for this many good, checksum-verified replicas
    replicate_to = "resc2"  # or a list: the worker replicates onto these resources itself

LEVEL is ``null`` (take the name's access away), ``read``, ``write`` or ``own``; NAME an iRODS user or group
(one that does not exist is reported by check-config when iRODS answers, and fails the file at ingest).
``replicate_to`` alone means ``min_replicas = 1 + len(replicate_to)``; both only with ``after = "delete"``
or ``"move"`` (they gate the disposal of the landing file; to replicate every object whatever its after-action,
use a replication resource on the server).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..config_parse import Checker

KEYS: frozenset[str] = frozenset({"acl", "inherit", "min_replicas", "replicate_to"})

LEVELS = ("null", "read", "write", "own")
# the level as the catalog names it (ModAccessControl accepts both; GenQuery answers these)
CATALOG_LEVEL = {"null": "null", "read": "read_object", "write": "modify_object", "own": "own"}
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,63}$")  # iRODS user and group names (and zone names)
_RESC = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")


@dataclass(frozen=True)
class Access:
    acl: tuple[str, ...] = ()  # "level:name" or "level:name#zone", as validated
    inherit: bool = False
    min_replicas: int = 1
    replicate_to: tuple[str, ...] = ()


class Rule(NamedTuple):
    level: str  # one of LEVELS
    name: str
    zone: str  # "" for the local zone

    @property
    def who(self) -> str:
        return f"{self.name}#{self.zone}" if self.zone else self.name

    def __str__(self) -> str:
        return f"{self.level}:{self.who}"


def parse_rule(text: str) -> Rule:
    """'read:name' or 'read:name#zone' → Rule; ValueError says what is wrong."""
    level, sep, who = text.partition(":")
    level = level.strip()
    if not sep:
        raise ValueError(f"{text!r} is not LEVEL:NAME (e.g. \"read:lab_readers\")")
    if level not in LEVELS:
        raise ValueError(f"{text!r}: level {level!r} is not one of {', '.join(LEVELS)}")
    name, _, zone = who.strip().partition("#")
    if not _NAME.match(name) or (zone and not _NAME.match(zone)) or who.count("#") > 1:
        raise ValueError(f"{text!r}: {who!r} is not an iRODS user or group name (letters, digits, _ . @ -; "
                         f"NAME or NAME#ZONE)")
    return Rule(level, name, zone)


def rules(a: Access) -> list[Rule]:
    return [parse_rule(t) for t in a.acl]


def per_object(a: Access) -> bool:
    """Each object needs its own ACL calls (no inheritance to give them the rules)."""
    return bool(a.acl) and not a.inherit


def gates_disposal(a: Access) -> bool:
    return a.min_replicas > 1 or bool(a.replicate_to)


def _acl(c: Checker, where: str, raw: dict[str, Any]) -> tuple[str, ...]:
    value = raw.get("acl", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        c.problems.append(f"{where}.acl: expected a list of \"LEVEL:NAME\" strings (LEVEL one of "
                          f"{', '.join(LEVELS)}), got {value!r}")
        return ()
    out: list[str] = []
    seen: dict[str, str] = {}
    for text in value:
        try:
            r = parse_rule(text)
        except ValueError as e:
            c.problems.append(f"{where}.acl: {e}")
            continue
        if r.who in seen:
            c.problems.append(f"{where}.acl: {r.who} is given twice ({seen[r.who]!r} and {text!r}); "
                              f"one level a name")
            continue
        seen[r.who] = text
        out.append(str(r))
    return tuple(out)


def _replicate_to(c: Checker, where: str, raw: dict[str, Any]) -> tuple[str, ...]:
    value = raw.get("replicate_to", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        c.problems.append(f"{where}.replicate_to: expected a resource name or a list of them, got {value!r}")
        return ()
    for v in value:
        if not _RESC.match(v):
            c.problems.append(f"{where}.replicate_to: {v!r} is not an iRODS resource name")
    if len(set(value)) != len(value):
        c.problems.append(f"{where}.replicate_to: a resource is named twice")
    resc = raw.get("resource")
    if isinstance(resc, str) and resc in value:
        c.problems.append(f"{where}.replicate_to: {resc!r} is the zone's resource (where the objects are "
                          f"written already)")
    return tuple(value)


def check(c: Checker, where: str, raw: dict[str, Any]) -> Access:
    acl = _acl(c, where, raw)
    inherit = c.get(where, raw, "inherit", bool, False)
    replicate_to = _replicate_to(c, where, raw)
    min_replicas = c.get(where, raw, "min_replicas", int, 1 + len(replicate_to))
    if min_replicas < 1:
        c.problems.append(f"{where}.min_replicas: must be at least 1 (got {min_replicas})")
        min_replicas = 1
    after = raw.get("after", "keep")
    if (min_replicas > 1 or replicate_to) and after not in ("delete", "move"):
        field = "replicate_to" if replicate_to else "min_replicas"
        c.problems.append(f"{where}.{field}: only used with after = \"delete\" or \"move\" (it holds the landing "
                          f"file until the object has its replicas; after is {after!r}); to replicate every "
                          f"object, use a replication resource on the server")
    return Access(acl=acl, inherit=inherit, min_replicas=min_replicas, replicate_to=replicate_to)
