"""The `[metrics]` table: where the daemon and the workers export Prometheus metrics (off by default).

    [metrics]
    listen = "127.0.0.1:9108"          # the daemon's endpoint (http://127.0.0.1:9108/metrics)
    worker_listen = "127.0.0.1:9110"   # the workers' base: worker instance N listens on port 9110 + N

A worker's instance number comes from ``$IRODS_INGESTD_WORKER_INSTANCE`` (the systemd template unit sets it
to ``%i``, so ``irods-ingestd-worker@3`` listens on 9113); a worker without one uses the base port itself.
Each worker has its own endpoint (no shared multiprocess directory), so workers on several hosts are
scraped the same way. An empty or missing address leaves that endpoint off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config_parse import Checker

KEYS: frozenset[str] = frozenset({"listen", "worker_listen"})
_ADDR = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):(\d{1,5})$")


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = ""  # host:port of the daemon's endpoint; "" = off
    worker_listen: str = ""  # host:port of worker instance 0; instance N adds N to the port; "" = off


def split_address(addr: str) -> tuple[str, int]:
    """'127.0.0.1:9108' → ('127.0.0.1', 9108); '[::1]:9108' → ('::1', 9108); ':9108' → ('0.0.0.0', 9108)."""
    m = _ADDR.match(addr)
    if not m:
        raise ValueError(f"{addr!r} is not host:port (e.g. 127.0.0.1:9108)")
    host, port = m.group(1).strip("[]") or "0.0.0.0", int(m.group(2))
    if not 1 <= port <= 65535:
        raise ValueError(f"{addr!r}: the port must be 1-65535")
    return host, port


def check(c: Checker, data: Mapping[str, Any]) -> MetricsConfig:
    raw = c.get("top level", data, "metrics", dict, {})
    c.unknown("[metrics]", raw, set(KEYS))
    values = {}
    for key in sorted(KEYS):
        value = c.get("[metrics]", raw, key, str, "")
        if value:
            try:
                split_address(value)
            except ValueError as e:
                c.problems.append(f"[metrics].{key}: {e}")
                value = ""
        values[key] = value
    return MetricsConfig(**values)
