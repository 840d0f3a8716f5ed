"""Notifications of a zone's events (webhooks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config_parse import Checker

KEYS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Notify:
    pass


def check(c: Checker, where: str, raw: dict[str, Any]) -> Notify:
    return Notify()
