"""pytest fixtures: the real iRODS server (the judge) and the iRODS test server (the fault injector).

Use with ``from tests.irods_server.pytest_plugin import *`` (or by listing this module in
``pytest_plugins``). Which server a test gets:

- **The real iRODS server** whenever one is configured: ``INGESTD_TEST_IRODS_ENV`` names an
  irods_environment.json (password in ``INGESTD_TEST_IRODS_PASSWORD``), or else ``.ci/irods.sh`` left
  ``.irods-test/irods_environment.json`` (and ``.irods-test/password``) in the checkout after it installed
  and started ../shared/irods. ``INGESTD_TEST_IRODS=standin`` ignores both (the second pass).
- **The test server** for tests marked ``@pytest.mark.standin`` (they need fault injection, API counters,
  the vault or a restart, which a real server cannot give on demand), and for everything when no real
  server is configured. A real server's fault/counter methods raise: a test that needs them and lacks
  the marker fails instead of silently passing.

Fixtures:

- ``irods_real`` (session): the real server, or None.
- ``irods_standin`` (session): one test server for the run, started on first use.
- ``irods_server`` (session): the real server if configured, else the test server.
- ``irods`` (function): the server for this test (see above); the test server's faults and counters are
  reset before the test and its faults after it.
- ``irods_server_factory`` (function): extra, independent test servers (``version="4.2.11"`` ...).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import REPO_ROOT, IrodsServerProcess

__all__ = ["RealIrodsServer", "irods", "irods_real", "irods_server", "irods_server_factory", "irods_standin",
           "real_irods_configured"]

ENV_VAR = "INGESTD_TEST_IRODS_ENV"
PASSWORD_VAR = "INGESTD_TEST_IRODS_PASSWORD"
CHOICE_VAR = "INGESTD_TEST_IRODS"  # "standin": use the test server for everything
LOCAL_DIR = REPO_ROOT / ".irods-test"  # written by .ci/irods.sh


class NeedsStandin(RuntimeError):
    """A fault/counter method was called on the real server: mark the test ``standin``."""


class RealIrodsServer:
    """A real iRODS server described by an irods_environment.json: same connection API, no faults."""

    real = True

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

    def _needs_standin(self, *_a: Any, **_kw: Any) -> Any:
        raise NeedsStandin("this needs the iRODS test server (faults, counters, vault, restart): "
                           "mark the test @pytest.mark.standin")

    restart = refuse_connections = drop_connections = set_delay = fail_next = _needs_standin
    reset_faults = counters = reset_counters = control = _needs_standin

    def vault_path(self, logical: str) -> Path:
        return self._needs_standin()

    @property
    def vault(self) -> Path:
        return self._needs_standin()

    @property
    def catalog(self) -> Path:
        return self._needs_standin()


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def real_irods_config() -> tuple[Path, str] | None:
    """(environment file, password) of the configured real server, or None."""
    if os.environ.get(CHOICE_VAR) == "standin":
        return None
    env_file = os.environ.get(ENV_VAR)
    if env_file:
        return Path(env_file), os.environ.get(PASSWORD_VAR, "")
    local = LOCAL_DIR / "irods_environment.json"
    if local.is_file():
        pw = (LOCAL_DIR / "password").read_text().strip() if (LOCAL_DIR / "password").is_file() else ""
        return local, pw
    return None


def real_irods_configured() -> bool:
    return real_irods_config() is not None


@pytest.fixture(scope="session")
def irods_real() -> RealIrodsServer | None:
    conf = real_irods_config()
    if conf is None:
        return None
    server = RealIrodsServer(*conf)
    if not _answers(server.host, server.port):
        pytest.exit(f"the real iRODS server of {conf[0]} does not answer on {server.host}:{server.port} "
                    f"(start it: bash ../shared/irods/install-irods.sh, or set {CHOICE_VAR}=standin)", 2)
    return server


@pytest.fixture(scope="session")
def irods_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IrodsServerProcess]:
    server = IrodsServerProcess(workdir=tmp_path_factory.mktemp("irods_server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def irods_server(request: pytest.FixtureRequest) -> IrodsServerProcess | RealIrodsServer:
    real = request.getfixturevalue("irods_real")
    return real if real is not None else request.getfixturevalue("irods_standin")


def _wants_standin(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("standin") is not None


@pytest.fixture
def irods(request: pytest.FixtureRequest) -> Iterator[IrodsServerProcess | RealIrodsServer]:
    server: IrodsServerProcess | RealIrodsServer
    server = request.getfixturevalue("irods_standin" if _wants_standin(request) else "irods_server")
    if isinstance(server, RealIrodsServer):
        yield server
        return
    if not server.running:
        server.start()
    server.reset_faults()
    server.reset_counters()
    yield server
    if server.running:
        server.reset_faults()


@pytest.fixture
def irods_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., IrodsServerProcess]]:
    started: list[IrodsServerProcess] = []

    def make(**kw: Any) -> IrodsServerProcess:
        server = IrodsServerProcess(workdir=tmp_path_factory.mktemp("irods_server_extra"), **kw)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
