"""Declarative metadata: AVUs from a file's relative path (a regex with named groups) and from JSON sidecars
(one per file, one per directory for its collection). See :mod:`irods_ingestd.sidecars` for the mapping and
:mod:`irods_ingestd.ingest.usermeta` for how they reach iRODS."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config_parse import Checker
from ..sidecars import MAX_ATTR_BYTES, OWN_PREFIX, avu_problem, name_regex

KEYS: frozenset[str] = frozenset({"path_regex", "path_regex_required", "avu_prefix", "sidecar", "dir_sidecar",
                                  "sidecar_ingest"})


@dataclass(frozen=True)
class Avus:
    path_regex: str = ""             # Python re, searched in the path relative to the zone: named groups → AVUs
    path_regex_required: bool = False  # a file the regex does not match fails (else: no path AVUs)
    avu_prefix: str = OWN_PREFIX     # attribute of a group: prefix + group name
    sidecar: str = ""                # a file's sidecar in its directory, "{name}" its name: "{name}.metadata.json"
    dir_sidecar: str = ""            # a directory's sidecar (AVUs on its collection): "metadata.json"
    sidecar_ingest: bool = False     # ingest sidecars as data objects too

    def extractors(self) -> tuple[str, ...]:
        """The metadata extractors these settings switch on (irods_ingestd.registry)."""
        return (("path",) if self.path_regex else ()) + (("sidecar",) if self.sidecar else ())


def _regex(c: Checker, where: str, raw: dict[str, Any], prefix: str) -> str:
    pattern = c.get(where, raw, "path_regex", str, "")
    if not pattern:
        return ""
    try:
        groups = list(re.compile(pattern).groupindex)
    except re.error as e:
        c.problems.append(f"{where}.path_regex: does not compile: {e}")
        return ""
    if not groups:
        c.problems.append(f"{where}.path_regex: has no named group like (?P<run>[^/]+): it would give no AVU")
        return ""
    for g in groups:
        if (why := avu_problem(prefix + g, "x")) is not None:
            c.problems.append(f"{where}.path_regex: group {g!r} makes the attribute {prefix + g!r}: {why}")
    return pattern


def _names(c: Checker, where: str, raw: dict[str, Any]) -> tuple[str, str]:
    sidecar = c.get(where, raw, "sidecar", str, "")
    if sidecar:
        rest = sidecar.replace("{name}", "", 1)
        if "{name}" not in sidecar or "{" in rest or "}" in rest or "/" in sidecar or not rest:
            c.problems.append(f"{where}.sidecar: {sidecar!r} must hold {{name}} (the file's name) once, something "
                              f"besides it, no other {{...}} and no / (the sidecar is beside its file), like "
                              f"\"{{name}}.metadata.json\"")
            sidecar = ""
    dir_sidecar = c.get(where, raw, "dir_sidecar", str, "")
    if dir_sidecar and ("/" in dir_sidecar or dir_sidecar in (".", "..") or "\0" in dir_sidecar):
        c.problems.append(f"{where}.dir_sidecar: {dir_sidecar!r} must be a file name (no /), like \"metadata.json\"")
        dir_sidecar = ""
    return sidecar, dir_sidecar


def _unit_file_not_a_sidecar(c: Checker, where: str, raw: dict[str, Any], sidecar: str, dir_sidecar: str) -> None:
    """A marker or manifest named like a sidecar is passed over as one (not ingested, never seen by the
    daemon's gate): every directory of the zone would wait for ever, silently."""
    rule = raw.get("complete_when")
    name = raw.get(rule) if rule in ("marker", "manifest") else None
    if not isinstance(name, str) or not name:
        return
    for key, pattern in (("sidecar", name_regex(sidecar, "")), ("dir_sidecar", name_regex("", dir_sidecar))):
        if pattern and re.match(pattern, name):
            c.problems.append(f"{where}.{key}: the zone's {rule} {name!r} would be taken for a sidecar (not "
                              f"ingested, never seen): no directory could ever complete")


def check(c: Checker, where: str, raw: dict[str, Any]) -> Avus:
    prefix = c.get(where, raw, "avu_prefix", str, OWN_PREFIX)
    if "\0" in prefix or len(prefix.encode()) >= MAX_ATTR_BYTES:
        c.problems.append(f"{where}.avu_prefix: holds a NUL or is {len(prefix.encode())} bytes long (an iRODS "
                          f"attribute is at most {MAX_ATTR_BYTES})")
        prefix = OWN_PREFIX
    pattern = _regex(c, where, raw, prefix)
    required = c.get(where, raw, "path_regex_required", bool, False)
    if required and not pattern and "path_regex" not in raw:
        c.problems.append(f"{where}.path_regex_required: needs a path_regex")
    sidecar, dir_sidecar = _names(c, where, raw)
    ingest = c.get(where, raw, "sidecar_ingest", bool, False)
    if not ingest:
        _unit_file_not_a_sidecar(c, where, raw, sidecar, dir_sidecar)
    metadata = raw.get("metadata")
    if isinstance(metadata, list):
        for name, key, on in (("path", "path_regex", pattern), ("sidecar", "sidecar", sidecar)):
            if name in metadata and not on:
                c.problems.append(f"{where}.metadata: the {name!r} extractor is switched on by {key}; set it "
                                  f"instead of naming {name!r} here")
    return Avus(path_regex=pattern, path_regex_required=required, avu_prefix=prefix, sidecar=sidecar,
                dir_sidecar=dir_sidecar, sidecar_ingest=ingest)
