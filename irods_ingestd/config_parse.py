"""Parsing helpers of the configuration: durations, sizes, and the checker that collects every problem."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")  # an RQ queue's name: [queue].name, [walk].queue
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1.5h', '250ms' or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):  # TOML's nan and inf: never reached, and nan compares false to anything
            raise ValueError(f"not a finite duration: {value!r}")
        if value < 0:
            raise ValueError(f"negative duration: {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    raise ValueError(f"not a duration (use e.g. 30s, 5m, 1h): {value!r}")


def parse_size(value: Any) -> int:
    """'256MiB', '1G', '4096' or a number of bytes → bytes."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            unit = (m.group(2) or "B").upper().rstrip("B").rstrip("I")
            mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]
            return int(float(m.group(1)) * mult)
    raise ValueError(f"not a size (use e.g. 64MiB, 1GiB): {value!r}")


class Checker:
    """Collects every problem of a config (one line each) while values are read."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def unknown(self, where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
        for key in sorted(set(table) - allowed):
            self.problems.append(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")

    def get(self, where: str, table: Mapping[str, Any], key: str, kind: type | tuple[type, ...],
            default: Any) -> Any:
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            self.problems.append(f"{where}.{key}: expected {'/'.join(k.__name__ for k in kinds)}, "
                                 f"got {type(value).__name__} {value!r}")
            return default
        return value

    def conv(self, where: str, table: Mapping[str, Any], key: str, fn: Any, default: Any) -> Any:
        if key not in table:
            return default
        try:
            return fn(table[key])
        except ValueError as e:
            self.problems.append(f"{where}.{key}: {e}")
            return default

    def choice(self, where: str, table: Mapping[str, Any], key: str, choices: tuple[str, ...],
               default: str) -> str:
        value = self.get(where, table, key, str, default)
        if value not in choices:
            self.problems.append(f"{where}.{key}: {value!r} is not one of {', '.join(choices)}")
            return default
        return str(value)

    def strings(self, where: str, table: Mapping[str, Any], key: str,
                default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(where, table, key, list, None)
        if value is None:
            return default
        if not all(isinstance(v, str) for v in value):
            self.problems.append(f"{where}.{key}: expected a list of strings")
            return default
        return tuple(value)
