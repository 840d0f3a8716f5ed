"""When a file (or a directory of files) is complete, besides its quiet period (`settle`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config_parse import Checker

KEYS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Completion:
    pass


def check(c: Checker, where: str, raw: dict[str, Any]) -> Completion:
    return Completion()
