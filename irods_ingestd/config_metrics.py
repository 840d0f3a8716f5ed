"""The `[metrics]` table: where the daemon and the workers export Prometheus metrics (off by default)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config_parse import Checker

KEYS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MetricsConfig:
    pass


def check(c: Checker, data: Mapping[str, Any]) -> MetricsConfig:
    raw = c.get("top level", data, "metrics", dict, {})
    c.unknown("[metrics]", raw, set(KEYS))
    return MetricsConfig()
