"""The plan of a zone whose directories complete by a marker or a manifest (`complete_when`): which of the
files that would be sent wait for their directory, said with the daemon's own gate (`completion.gate.Gate`:
its pattern, `unit_of`, and the units it loads from Redis, read only).

A file below a directory already complete passes as planned. Below a marker or manifest the walk found, it
waits for it (a marker: until it settles; a manifest: until every file it lists is present and settled). Below
neither, it is *held*: the daemon keeps it out of the queue until its directory completes. The marker itself
is ingested last (`marker_ingest = "last"`) or never (`"skip"`); one in the zone's root is not honoured.
"""

from __future__ import annotations

import redis

from .completion import units
from .completion.gate import Gate
from .planner import CONFLICT, EXCLUDED, HELD, INGEST, PRESENT, SETTLING, UPDATE, Item, ZonePlan

_SENT = (INGEST, UPDATE, PRESENT, CONFLICT, SETTLING)


def _ancestors(rel: str) -> list[str]:
    """The directories above a file, outermost first, the zone's root left out (units do not nest)."""
    parts = rel.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _note(it: Item, text: str) -> None:
    it.reason = f"{it.reason}; {text}" if it.reason else text


def apply(plan: ZonePlan, r: redis.Redis | None, prefix: str) -> str | None:
    """Say, on the plan's items, what the zone's completion rule does with them; a note when the units the
    daemon registered could not be read (then every directory is taken as not complete yet)."""
    c = plan.zone.completion
    if not c.by_directory:
        return None
    gate = Gate(plan.zone)
    note = None
    if r is None:
        note = "Redis not read: directories completed earlier are not known"
    else:
        try:
            gate.load(r, prefix)
        except redis.RedisError as e:
            note = f"Redis not read ({e}): directories completed earlier are not known"
    kind, pattern = c.complete_when, c.pattern
    found = {units.unit_of(it.rel): it for it in plan.items
             if it.action != EXCLUDED and gate.is_completer(it.rel) and units.unit_of(it.rel)}
    for it in plan.items:
        if it.action not in _SENT:
            continue
        known = gate.unit_of(it.rel)
        if known is not None and gate.units[known].released:
            continue  # its directory is complete: sent as planned
        if kind == "marker" and gate.is_completer(it.rel) and known is None:
            mdir = units.unit_of(it.rel)
            if not mdir:
                it.action, it.reason = HELD, "a marker in the zone's root is not honoured (it completes the " \
                                             "directory it is in, below the zone)"
            elif c.marker_ingest == "skip":
                it.action, it.reason = EXCLUDED, f"the marker of {mdir}/ (marker_ingest = \"skip\"): never ingested"
            else:
                _note(it, f"the marker of {mdir}/: ingested last, once every other file there is verified")
            continue
        unit = known or next((d for d in _ancestors(it.rel) if d in found), None)
        if unit is not None:
            by = gate.units[unit].file if known else found[unit].rel
            wait = "to settle" if kind == "marker" else "and every file it lists to be present and settled"
            _note(it, f"waits for {unit}/ to be complete ({kind} {by} {wait})")
            continue
        if it.action != SETTLING:
            it.action = HELD
        _note(it, f"held until its directory is complete (complete_when = \"{kind}\": no file matching "
                  f"{pattern!r} in it or above)")
    return note
