"""Shared fixtures: a real redis-server and the iRODS test server (or a real iRODS, see the README)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_harness import RedisServerProcess

try:
    from tests.irods_server.pytest_plugin import *  # noqa: F401,F403
except ImportError:  # the test server is not there yet
    pass


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    server = RedisServerProcess(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_conn(redis_server: RedisServerProcess) -> Iterator[redis.Redis]:
    """A client to an emptied Redis."""
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()
    r = redis_server.client()
    r.flushall()
    yield r
    r.close()
