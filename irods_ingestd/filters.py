"""Which names a zone ingests: include/exclude globs and the temporary names of copy tools.

Patterns match the file name; a pattern holding a `/` matches the path relative to the zone.
Special files (FIFOs, sockets, devices) are recognised from the directory entry and never opened.
"""

from __future__ import annotations

import fnmatch
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass

from .config import ZoneConfig
from .names import RESERVED_LANDING
from .sidecars import name_regex


def _compile(patterns: tuple[str, ...]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    names = [fnmatch.translate(p) for p in patterns if "/" not in p]
    paths = [fnmatch.translate(p) for p in patterns if "/" in p]
    return (re.compile("|".join(names)) if names else None, re.compile("|".join(paths)) if paths else None)


@dataclass(frozen=True)
class NameFilter:
    include: tuple[re.Pattern[str] | None, re.Pattern[str] | None]
    exclude: tuple[re.Pattern[str] | None, re.Pattern[str] | None]
    temp: tuple[re.Pattern[str] | None, re.Pattern[str] | None]

    # One regex of names to skip, where no pattern looks at paths and every name is included: the
    # walk's usual case then costs one match a file. None otherwise.
    fast: re.Pattern[str] | None = None
    # the zone's patterns as written (include, exclude, temp_patterns), for `explain`
    sources: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] = ((), (), ())
    sidecar: re.Pattern[str] | None = None  # metadata sidecars, not ingested (unless sidecar_ingest)

    @classmethod
    def for_zone(cls, zone: ZoneConfig) -> NameFilter:
        include, exclude = _compile(zone.include), _compile(zone.exclude)
        temp = _compile(tuple(zone.temp_patterns) + RESERVED_LANDING)  # reserved, whatever the config says
        fast = None
        side = None if zone.avus.sidecar_ingest else name_regex(zone.avus.sidecar, zone.avus.dir_sidecar)
        if "*" in zone.include and not any("/" in p for p in zone.exclude + zone.temp_patterns):
            pats = [p.pattern for p in (temp[0], exclude[0]) if p is not None] + ([side] if side else [])
            fast = re.compile("|".join(pats)) if pats else re.compile(r"(?!)")
        return cls(include, exclude, temp, fast, (zone.include, zone.exclude, tuple(zone.temp_patterns)),
                   sidecar=re.compile(side) if side else None)

    def wanted(self, name: str, rel_of: Callable[[], str]) -> bool:
        """The walk's fast question, `reason_to_skip(...) is None`; the relative path is built only
        when a pattern needs it."""
        if self.fast is not None:
            return not self.fast.match(name)
        return self.reason_to_skip(name, rel_of()) is None

    @staticmethod
    def _hit(pats: tuple[re.Pattern[str] | None, re.Pattern[str] | None], name: str, rel: str) -> bool:
        n, p = pats
        return bool((n and n.match(name)) or (p and p.match(rel)))

    def reason_to_skip(self, name: str, rel: str) -> str | None:
        """None if the file is wanted; else why not ('temporary', 'sidecar', 'excluded', 'not included')."""
        if self._hit(self.temp, name, rel):
            return "temporary"
        if self.sidecar is not None and self.sidecar.match(name):
            return "sidecar"
        if self._hit(self.exclude, name, rel):
            return "excluded"
        if not self._hit(self.include, name, rel):
            return "not included"
        return None

    def explain(self, name: str, rel: str) -> str | None:
        """`reason_to_skip`, said with the pattern that decided it (for `irods-ingestd plan`)."""
        why = self.reason_to_skip(name, rel)
        if why == "temporary":
            reserved = _first_match(RESERVED_LANDING, name, rel)
            if reserved:
                return f"reserved name (irods-ingestd's own temporary names, {reserved!r})"
            return f"temporary name (temp_patterns {_first_match(self.sources[2], name, rel)!r})"
        if why == "sidecar":
            return "a metadata sidecar (the zone's sidecar or dir_sidecar; sidecar_ingest = false)"
        if why == "excluded":
            return f"excluded (exclude {_first_match(self.sources[1], name, rel)!r})"
        if why:
            return f"not included (include {', '.join(repr(p) for p in self.sources[0])})"
        return None

    def explain_dir(self, name: str, rel: str) -> str:
        return f"directory excluded (exclude {_first_match(self.sources[1], name, rel)!r}): not walked"

    def dir_excluded(self, name: str, rel: str) -> bool:
        """Directories are skipped only when an exclude pattern names them."""
        return self._hit(self.exclude, name, rel)


def _first_match(patterns: tuple[str, ...], name: str, rel: str) -> str | None:
    """The first of these patterns that matches, with the filter's own matching (name, or path with a /)."""
    for p in patterns:
        if NameFilter._hit(_compile((p,)), name, rel):
            return p
    return None


def special_kind(mode: int) -> str | None:
    """'fifo', 'socket', 'device' for files that must never be opened; None for regular files."""
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return None
