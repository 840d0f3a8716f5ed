"""Reachability of Redis and iRODS, probed when the metrics are scraped (at most every PROBE_EVERY s).

`irods_ingestd_redis_up`: a PING on a client of its own (2 s timeout) answered. `irods_ingestd_irods_up`:
the iRODS server (host and port of the environment file) answered the protocol's startup message within
2 s (no login: the server logs nothing); it says the server is there, not that this account may log in
(failed calls show in `irods_ingestd_irods_call_errors_total`). The probes run on the scrape's thread,
never on the ingest's.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator

import redis
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .config import Config

PROBE_EVERY = 5.0
TIMEOUT = 2.0

_installed: Reachability | None = None
_lock = threading.Lock()


class Reachability(Collector):
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._at = 0.0
        self._up = (0.0, 0.0)
        self._redis: redis.Redis | None = None

    def _redis_up(self) -> bool:
        try:
            if self._redis is None:
                from .redisconn import connect

                self._redis = connect(self.cfg.redis)
                self._redis.connection_pool.connection_kwargs.update(socket_timeout=TIMEOUT,
                                                                     socket_connect_timeout=TIMEOUT)
            return bool(self._redis.ping())
        except (redis.RedisError, OSError, ValueError):
            return False

    def _irods_up(self) -> bool:
        """The server answers a startup pack (the protocol's first step; no login, nothing in its log)."""
        from irods.message import StartupPack, iRODSMessage

        from .irods_session import APPLICATION_NAME, SessionError, read_environment

        env_file = self.cfg.irods.environment_file
        if env_file is None:
            return False
        try:
            env = read_environment(env_file)
            user = (str(env["irods_user_name"]), str(env["irods_zone_name"]))
            with socket.create_connection((str(env["irods_host"]), int(env["irods_port"])), timeout=TIMEOUT) as s:
                s.settimeout(TIMEOUT)
                s.sendall(iRODSMessage(msg_type="RODS_CONNECT",
                                       msg=StartupPack(user, user, APPLICATION_NAME + "-probe")).pack())
                answer = iRODSMessage.recv(s)  # the version, or an error: either way the server is there
                with contextlib.suppress(OSError):
                    s.sendall(iRODSMessage(msg_type="RODS_DISCONNECT").pack())
                return answer is not None
        except (SessionError, OSError, ValueError, KeyError, struct.error):
            return False

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if time.monotonic() - self._at >= PROBE_EVERY:
                self._up = (float(self._redis_up()), float(self._irods_up()))
                self._at = time.monotonic()
            r_up, i_up = self._up
        yield GaugeMetricFamily("irods_ingestd_redis_up", "Redis answered a PING (1) or not (0)", value=r_up)
        yield GaugeMetricFamily("irods_ingestd_irods_up", "The iRODS server accepted a connection (1) or not (0)",
                                value=i_up)


def install(cfg: Config) -> None:
    """Register the probe once per process (the first config wins; a reload does not change hosts)."""
    global _installed
    with _lock:
        if _installed is None:
            _installed = Reachability(cfg)
            REGISTRY.register(_installed)


