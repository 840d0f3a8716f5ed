"""A zone's configuration: the `[[zone]]` tables, validated one by one and then against each other.

The settings of one feature each (completion, metadata, access, notifications) are parts validated by their
own module in :mod:`irods_ingestd.zoneparts`; this module holds the zone's core settings and their checks.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry, zoneparts
from .config_parse import Checker, parse_duration
from .config_paths import aliasing_problems
from .zoneparts.access import Access
from .zoneparts.avus import Avus
from .zoneparts.completion import Completion
from .zoneparts.notify import Notify

# Temporary names of the usual copy tools: rsync's `.name.XXXXXX`, partial downloads, editors' backups.
DEFAULT_TEMP_PATTERNS = (
    ".*.??????",
    "*.part",
    "*.partial",
    "*.tmp",
    "*.temp",
    "*~",
    ".~lock.*",
    "*.swp",
    ".nfs*",
    "*.filepart",
    ".syncthing.*",
)

MODES = ("put", "register")
WATCHERS = ("inotify", "fanotify", "poll")
SYMLINK_POLICIES = ("skip", "follow")
AFTER_ACTIONS = ("keep", *registry.AFTER_ACTIONS)  # delete, move: irods_ingestd.registry
VERSION_POLICIES = ("keep", "replace", "conflict")
PROVENANCE = ("object", "collection")  # where the provenance AVUs go (see ingest/extractors/provenance.py)
MIN_SETTLE = 0.1  # seconds



@dataclass(frozen=True)
class ZoneConfig:
    name: str
    path: Path
    collection: str
    mode: str = "put"
    settle: float = 10.0
    watcher: str = "inotify"
    rescan: float = 900.0
    poll_interval: float = 30.0
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    temp_patterns: tuple[str, ...] = DEFAULT_TEMP_PATTERNS
    symlinks: str = "skip"
    resource: str = ""
    after: str = "keep"
    move_to: Path | None = None
    versions: str = "keep"  # a different file under an ingested name: keep the old object as name.~N~
    metadata: tuple[str, ...] = ()  # metadata extractors besides the provenance (irods_ingestd.registry)
    after_hold: float = 10.0  # seconds a verified file is left alone before delete/move (default: settle)
    # "object": the 7 provenance AVUs on every object (one metadata call a file, ~ the cost of the put);
    # "collection": the zone's provenance once on its collection, nothing a file (see bench/README.md)
    provenance: str = "object"
    completion: Completion = field(default_factory=Completion)
    avus: Avus = field(default_factory=Avus)
    access: Access = field(default_factory=Access)
    notify: Notify = field(default_factory=Notify)



_ZONE_KEYS = {
    "name", "path", "collection", "mode", "settle", "watcher", "rescan", "poll_interval", "include",
    "exclude", "temp_patterns", "symlinks", "resource", "after", "move_to",
    "versions", "after_hold", "metadata", "provenance",
} | zoneparts.KEYS
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _irods_path_ok(p: str) -> bool:
    return p.startswith("/") and len(p) > 1 and "//" not in p and not p.endswith("/") and "\0" not in p and \
        all(part not in (".", "..") for part in p.split("/")[1:])


def _zone_name(c: Checker, i: int, raw: dict[str, Any]) -> str:
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        c.problems.append(f"zone #{i + 1}.name: missing or invalid (letters, digits, _ . -; 1-64 chars): "
                          f"{name!r}")
        return f"#{i + 1}"
    return name


def _zone_collection(c: Checker, where: str, raw: dict[str, Any]) -> str | None:
    collection = c.get(where, raw, "collection", str, None)
    if collection is None:
        c.problems.append(f"{where}.collection: missing (the target iRODS collection)")
    elif not _irods_path_ok(collection):
        c.problems.append(f"{where}.collection: {collection!r} must be an absolute iRODS path like "
                          f"/zone/home/user/landing (no trailing slash, no . or ..)")
    return collection


def _zone_times(c: Checker, where: str, raw: dict[str, Any]) -> tuple[float, float, float]:
    """settle, rescan, poll_interval."""
    settle = c.conv(where, raw, "settle", parse_duration, 10.0)
    if settle < MIN_SETTLE:
        c.problems.append(f"{where}.settle: must be at least {MIN_SETTLE:g}s (a file is ready when unchanged for "
                          f"this long; {settle:g}s would queue files still being written)")
    rescan = c.conv(where, raw, "rescan", parse_duration, 900.0)
    if rescan is not None and rescan < 1:
        c.problems.append(f"{where}.rescan: must be at least 1s")
    poll_interval = c.conv(where, raw, "poll_interval", parse_duration, 30.0)
    if poll_interval is not None and poll_interval < 0.1:
        c.problems.append(f"{where}.poll_interval: must be at least 0.1s")
    return settle, rescan, poll_interval


def _zone_metadata(c: Checker, where: str, raw: dict[str, Any]) -> tuple[str, ...]:
    metadata = c.strings(where, raw, "metadata", ())
    for m in metadata:
        if m not in registry.EXTRACTORS:
            c.problems.append(f"{where}.metadata: no metadata extractor named {m!r} (there are: "
                              f"{', '.join(sorted(registry.EXTRACTORS))})")
    return metadata


def _zone_path(c: Checker, where: str, path_s: str | None, check_paths: bool) -> Path | None:
    if path_s is not None and "\0" in path_s:  # (TOML's "\u0000"): no file name holds one; os calls raise
        c.problems.append(f"{where}.path: {path_s!r} contains a NUL character")
        return None
    path = Path(path_s) if path_s is not None else None  # "" is Path("."): refused as not absolute
    if path is None:
        return None
    if not path.is_absolute():
        c.problems.append(f"{where}.path: {path_s!r} must be an absolute path")
    elif check_paths:
        try:
            st = os.stat(path)
            if not stat.S_ISDIR(st.st_mode):
                c.problems.append(f"{where}.path: {path_s} is not a directory")
            elif not os.access(path, os.R_OK | os.X_OK):
                c.problems.append(f"{where}.path: {path_s} is not readable by this user")
        except OSError as e:
            c.problems.append(f"{where}.path: {path_s}: {e.strerror}")
    return path


def _zone_move_to(c: Checker, where: str, move_to_s: str | None, after: str) -> Path | None:
    if move_to_s is not None and "\0" in move_to_s:
        c.problems.append(f"{where}.move_to: {move_to_s!r} contains a NUL character")
        return None
    move_to = Path(move_to_s) if move_to_s else None
    if after == "move":
        if move_to is None:
            c.problems.append(f"{where}.move_to: required when after = \"move\"")
        elif not move_to.is_absolute():
            c.problems.append(f"{where}.move_to: {move_to_s!r} must be an absolute path")
    elif move_to is not None:
        c.problems.append(f"{where}.move_to: only used with after = \"move\" (after is {after!r})")
    return move_to


def _check_zone(c: Checker, i: int, raw: Any, check_paths: bool) -> ZoneConfig | None:
    if not isinstance(raw, dict):
        c.problems.append(f"zone #{i + 1}: expected a [[zone]] table")
        return None
    name = _zone_name(c, i, raw)
    where = f"zone {name!r}"
    c.unknown(where, raw, _ZONE_KEYS)
    path_s = c.get(where, raw, "path", str, None)
    if path_s is None:
        c.problems.append(f"{where}.path: missing (the landing directory)")
    collection = _zone_collection(c, where, raw)
    mode = c.choice(where, raw, "mode", MODES, "put")
    settle, rescan, poll_interval = _zone_times(c, where, raw)
    watcher = c.choice(where, raw, "watcher", WATCHERS, "inotify")
    symlinks = c.choice(where, raw, "symlinks", SYMLINK_POLICIES, "skip")
    after = c.choice(where, raw, "after", AFTER_ACTIONS, "keep")
    versions = c.choice(where, raw, "versions", VERSION_POLICIES, "keep")
    provenance = c.choice(where, raw, "provenance", PROVENANCE, "object")
    metadata = _zone_metadata(c, where, raw)
    after_hold = c.conv(where, raw, "after_hold", parse_duration, settle)
    if after_hold is not None and after_hold < 0:
        c.problems.append(f"{where}.after_hold: must not be negative")
    move_to_s = c.get(where, raw, "move_to", str, None)
    resource = c.get(where, raw, "resource", str, "")
    include = c.strings(where, raw, "include", ("*",))
    exclude = c.strings(where, raw, "exclude", ())
    temps = c.strings(where, raw, "temp_patterns", DEFAULT_TEMP_PATTERNS)
    path = _zone_path(c, where, path_s, check_paths)
    move_to = _zone_move_to(c, where, move_to_s, after)
    if provenance == "collection" and versions == "replace" and mode == "put":
        c.problems.append(f"{where}.versions: \"replace\" needs provenance = \"object\" (with the provenance on the "
                          f"collection an object cannot be told from one someone else put there, and it would be "
                          f"destroyed); use \"keep\" or \"conflict\"")
    if mode == "register" and after != "keep":
        c.problems.append(f"{where}.after: a register-mode zone keeps its files in place; after must be "
                          f"\"keep\", not {after!r}")
    if path is None or collection is None:
        return None
    parts: dict[str, Any] = {part: mod.check(c, where, raw) for part, mod in zoneparts.PARTS.items()}
    return ZoneConfig(
        name=name, path=path, collection=collection, mode=mode, settle=settle, watcher=watcher,
        rescan=rescan, poll_interval=poll_interval, include=include, exclude=exclude, temp_patterns=temps,
        symlinks=symlinks,
        resource=resource, after=after, move_to=move_to, versions=versions, metadata=tuple(metadata),
        after_hold=after_hold if after_hold is not None else settle, provenance=provenance, **parts,
    )


def check_zones(c: Checker, zraw: Any, check_paths: bool) -> list[ZoneConfig]:
    """Every [[zone]], then what they must not share: a name, a directory (by real path and device/inode,
    not text: symlinks, bind mounts; missing directories are fine here), a move_to, a collection."""
    if not isinstance(zraw, list):
        c.problems.append("zone: use [[zone]] tables (an array of tables)")
        zraw = []
    zones = [z for i, raw in enumerate(zraw) if (z := _check_zone(c, i, raw, check_paths))]
    if not zraw:
        c.problems.append("no [[zone]] defined: nothing to watch")
    seen: dict[str, ZoneConfig] = {}
    for z in zones:
        if z.name in seen:
            c.problems.append(f"zone {z.name!r}: the name is used twice")
        seen[z.name] = z
    c.problems += aliasing_problems([z for z in zones if z.path.is_absolute() and
                                     (z.move_to is None or z.move_to.is_absolute())])
    for i, a in enumerate(zones):
        for b in zones[i + 1:]:
            if a.collection == b.collection or a.collection.startswith(b.collection + "/") or \
                    b.collection.startswith(a.collection + "/"):
                c.problems.append(f"zone {a.name!r} and zone {b.name!r}: their collections overlap "
                                  f"({a.collection} and {b.collection})")
    return zones
