"""Flat frozen dataclasses to and from plain records (dicts of str, numbers, lists), for job records.

A job is pickled by RQ as a plain dict so a worker of another version can read it; the per-zone parts of
the config (:mod:`irods_ingestd.zoneparts`) travel in it this way. Unknown keys are ignored (an older
worker reading a newer record) and missing keys take the field's default (a newer worker, an older record).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _plain(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _frozen(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return tuple(_frozen(x) for x in v)
    return v


def as_record(obj: Any) -> dict[str, Any]:
    """A flat dataclass as a dict of plain values (tuples become lists, paths strings)."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def from_record(cls: type[T], rec: dict[str, Any] | None) -> T:
    """The dataclass `cls` from a record made by `as_record`; lists come back as tuples."""
    rec = rec or {}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: _frozen(v) for k, v in rec.items() if k in names})
