"""When a file (or a directory of files) is complete, besides its quiet period (`settle`).

``complete_when`` (per zone):

* ``"settle"`` (default): a file is ready when unchanged for ``settle`` (nothing else).
* ``"marker"``: a directory is complete when a file named ``marker`` (a name or a glob, e.g.
  ``RTAComplete.txt``) appears in it; its files, at any depth, are ingested only then. ``marker_ingest``:
  ``"last"`` (the marker is ingested after every other file of the directory is verified) or ``"skip"``
  (never ingested).
* ``"manifest"``: a directory is complete when its manifest (``manifest``: a name or glob, e.g.
  ``"*.sha256"``; ``sha256sum``/``md5sum`` format) and every file it lists are present and settled; each
  listed file is verified against its listed sum by the worker.
* ``"close"``: a file is ready ``close_settle`` after its writer closed it (inotify's IN_CLOSE_WRITE,
  fanotify's FAN_CLOSE_WRITE) instead of after the full ``settle``; a file still open for writing is never
  ready. Not for poll zones.

With ``marker``/``manifest`` the directory is the unit of the after-action: ``after = "move"`` moves the
whole directory once all of it is verified, ``"delete"`` deletes its files only then (see
:mod:`irods_ingestd.completion`).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from ..config_parse import Checker, parse_duration

KEYS: frozenset[str] = frozenset({"complete_when", "marker", "marker_ingest", "manifest", "close_settle"})

RULES = ("settle", "marker", "manifest", "close")
MARKER_INGEST = ("last", "skip")
UNIT_RULES = ("marker", "manifest")  # a directory is the unit


@dataclass(frozen=True)
class Completion:
    complete_when: str = "settle"
    marker: str = ""  # a file name or glob (complete_when = "marker")
    marker_ingest: str = "last"  # last | skip
    manifest: str = ""  # a file name or glob (complete_when = "manifest")
    close_settle: float = 1.0  # seconds after IN_CLOSE_WRITE (complete_when = "close")

    @property
    def by_directory(self) -> bool:
        """A directory is the unit: its files wait for its marker or manifest."""
        return self.complete_when in UNIT_RULES

    @property
    def pattern(self) -> str:
        """The marker's or the manifest's name (glob); '' for the other rules."""
        return self.marker if self.complete_when == "marker" else \
            self.manifest if self.complete_when == "manifest" else ""


def _name(c: Checker, where: str, raw: dict[str, Any], key: str, needed: bool, rule: str) -> str:
    value = c.get(where, raw, key, str, "")
    if needed and not value:
        c.problems.append(f"{where}.{key}: required with complete_when = \"{rule}\" (a file name or glob, "
                          f"e.g. {'RTAComplete.txt' if rule == 'marker' else '*.sha256'})")
    elif not needed and key in raw:
        c.problems.append(f"{where}.{key}: only used with complete_when = \"{rule}\"")
    elif value and ("/" in value or value in (".", "..")):
        c.problems.append(f"{where}.{key}: {value!r} must be a file name or glob without '/' (it names a file "
                          f"in the directory it completes)")
    return value


def _patterns(raw: dict[str, Any], key: str, default: tuple[str, ...]) -> list[str]:
    value = raw.get(key, default)
    return [p for p in value if isinstance(p, str) and "/" not in p] if isinstance(value, list | tuple) else []


def _not_skipped(c: Checker, where: str, raw: dict[str, Any], rule: str, name: str) -> None:
    """A marker or manifest the zone's own name patterns skip never reaches the daemon: its directories would
    wait for ever, silently (said for the name as written; a glob is taken as a name)."""
    from ..config_zone import DEFAULT_TEMP_PATTERNS  # config_zone imports this module

    why = ""
    for key, default in (("temp_patterns", DEFAULT_TEMP_PATTERNS), ("exclude", ())):
        hits = [p for p in _patterns(raw, key, default) if fnmatch.fnmatchcase(name, p)]
        why = why or (f"{key} {hits[0]!r}" if hits else "")
    include = _patterns(raw, "include", ("*",))
    if not why and include and not any(fnmatch.fnmatchcase(name, p) for p in include):
        why = f"include {include!r}"
    if why:
        c.problems.append(f"{where}.{rule}: {name!r} is skipped by the zone's {why}: no directory could ever "
                          f"complete (the {rule} would never be seen)")


def check(c: Checker, where: str, raw: dict[str, Any]) -> Completion:
    rule = c.choice(where, raw, "complete_when", RULES, "settle")
    marker = _name(c, where, raw, "marker", rule == "marker", "marker")
    manifest = _name(c, where, raw, "manifest", rule == "manifest", "manifest")
    marker_ingest = c.choice(where, raw, "marker_ingest", MARKER_INGEST, "last")
    if "marker_ingest" in raw and rule != "marker":
        c.problems.append(f"{where}.marker_ingest: only used with complete_when = \"marker\"")
    close_settle = c.conv(where, raw, "close_settle", parse_duration, 1.0)
    if "close_settle" in raw and rule != "close":
        c.problems.append(f"{where}.close_settle: only used with complete_when = \"close\"")
    if close_settle is not None and close_settle < 0.1:
        c.problems.append(f"{where}.close_settle: must be at least 0.1s")
        close_settle = 1.0
    if rule == "close" and raw.get("watcher", "inotify") not in ("inotify", "fanotify"):
        c.problems.append(f"{where}.complete_when: \"close\" needs an event watcher, inotify or fanotify (they "
                          f"report a writer's close); a {raw.get('watcher')!r} zone sees no close (use \"settle\")")
    if rule == "manifest" and raw.get("mode", "put") == "register":
        c.problems.append(f"{where}.complete_when: \"manifest\" needs mode = \"put\" (each file is verified "
                          f"against its listed sum as copied; register mode copies nothing)")
    if rule in UNIT_RULES and (name := marker or manifest):
        _not_skipped(c, where, raw, rule, name)
    return Completion(complete_when=rule, marker=marker, marker_ingest=marker_ingest, manifest=manifest,
                      close_settle=close_settle if close_settle is not None else 1.0)
