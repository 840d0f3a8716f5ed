"""AVUs from the file's path relative to the zone: each named group of the zone's `path_regex` that matched
a non-empty text gives `<avu_prefix><group> = <text>` (the path as valid UTF-8: mapped components).

A path the regex does not match gets no such AVU, or fails the file with `path_regex_required = true`."""

from __future__ import annotations

import functools
import re

from irods.meta import iRODSMeta

from ... import names
from ...job import FileItem, ZoneSpec
from ...sidecars import avu_problem
from ..usermeta import BadMetadata


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def avus(zone: ZoneSpec, item: FileItem, target: names.Target, host: str) -> list[iRODSMeta]:
    cfg = zone.avus
    if not cfg.path_regex:
        return []
    rel = names.display(item.rel)
    m = _compiled(cfg.path_regex).search(rel)
    if m is None:
        if cfg.path_regex_required:
            raise BadMetadata(f"path {rel!r} does not match the zone's path_regex {cfg.path_regex!r} "
                              f"(path_regex_required = true)")
        return []
    out = []
    for group, value in m.groupdict().items():
        if not value:
            continue
        attr = cfg.avu_prefix + group
        if (why := avu_problem(attr, value)) is not None:
            raise BadMetadata(f"path_regex group {group!r} of {rel!r}: {why}")
        out.append(iRODSMeta(attr, value))
    return out
