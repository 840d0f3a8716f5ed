"""pytest fixtures for the iRODS test server.

Use with ``from tests.irods_server.pytest_plugin import *`` (or by listing this module in
``pytest_plugins``). Fixtures:

- ``irods_server`` (session scope): one test server for the whole run, or a real iRODS server when
  ``INGESTD_TEST_IRODS_ENV`` names an irods_environment.json (password in
  ``INGESTD_TEST_IRODS_PASSWORD``); then every fault/counter method calls ``pytest.skip``.
- ``irods`` (function scope): the same object, restarted if a test stopped it, with faults and
  counters reset before the test, and faults reset after it.
- ``irods_server_factory`` (function scope): call it to get extra, independent test servers
  (e.g. ``irods_server_factory(version="4.2.11")``); they are stopped after the test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import IrodsServerProcess

__all__ = ["RealIrodsServer", "irods", "irods_server", "irods_server_factory"]

ENV_VAR = "INGESTD_TEST_IRODS_ENV"
PASSWORD_VAR = "INGESTD_TEST_IRODS_PASSWORD"


class RealIrodsServer:
    """A real iRODS server described by an irods_environment.json: same connection API, no faults."""

    def __init__(self, env_file: Path, password: str) -> None:
        self.env_file = Path(env_file)
        env = json.loads(self.env_file.read_text())
        self.env = env
        self.host: str = env["irods_host"]
        self.port: int = int(env.get("irods_port", 1247))
        self.zone: str = env["irods_zone_name"]
        self.user: str = env["irods_user_name"]
        self.password = password
        self.version = ""
        self.home: str = env.get("irods_home") or f"/{self.zone}/home/{self.user}"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    @property
    def running(self) -> bool:
        return True

    def write_env_file(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.env, indent=2) + "\n")
        return path

    def session(self, **kw: Any) -> Any:
        from irods.session import iRODSSession

        args: dict[str, Any] = {**self.env, "password": self.password}
        args.update(kw)
        return iRODSSession(**args)

    def _skip(self, *_a: Any, **_kw: Any) -> Any:
        pytest.skip("needs the iRODS test server (fault injection/counters); running against a real iRODS")

    restart = refuse_connections = drop_connections = set_delay = fail_next = _skip
    reset_faults = counters = reset_counters = control = _skip

    def vault_path(self, logical: str) -> Path:
        return self._skip()

    @property
    def vault(self) -> Path:
        return self._skip()

    @property
    def catalog(self) -> Path:
        return self._skip()


@pytest.fixture(scope="session")
def irods_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IrodsServerProcess | RealIrodsServer]:
    env_file = os.environ.get(ENV_VAR)
    if env_file:
        yield RealIrodsServer(Path(env_file), os.environ.get(PASSWORD_VAR, ""))
        return
    server = IrodsServerProcess(workdir=tmp_path_factory.mktemp("irods_server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def irods(irods_server: IrodsServerProcess | RealIrodsServer) -> Iterator[IrodsServerProcess | RealIrodsServer]:
    if isinstance(irods_server, RealIrodsServer):
        yield irods_server
        return
    if not irods_server.running:
        irods_server.start()
    irods_server.reset_faults()
    irods_server.reset_counters()
    yield irods_server
    if irods_server.running:
        irods_server.reset_faults()


@pytest.fixture
def irods_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., IrodsServerProcess]]:
    started: list[IrodsServerProcess] = []

    def make(**kw: Any) -> IrodsServerProcess:
        if os.environ.get(ENV_VAR):
            pytest.skip("needs extra iRODS test servers; running against a real iRODS")
        server = IrodsServerProcess(workdir=tmp_path_factory.mktemp("irods_server_extra"), **kw)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
