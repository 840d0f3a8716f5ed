"""Fixtures for the systemd end-to-end tests (real systemd as PID 1 under systemd-nspawn).

The tests are skipped, with the reason, only where a container cannot be booted at all (not root,
systemd-nspawn or debootstrap missing). Everything else (building the rootfs, booting) failing is a
test failure. The rootfs is cached outside the checkout (``INGESTD_E2E_CACHE``).

``e2e_irods`` says which iRODS server the scenario talks to: the real one when configured (see
``tests/irods_server/pytest_plugin.py``; the container then shares the host's network), else the
iRODS test server started inside the container (private network, as before).
"""

from __future__ import annotations

import json
import shlex
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import nspawn, rootfs
from tests.irods_server.pytest_plugin import RealIrodsServer

# The big file of the "stop during a long ingest" step against a real server (no delay fault there):
# large enough that its put (parallel, over the data ports) and checksums run for seconds.
BIG_BYTES_REAL = 1536 << 20
# Against the test server the delay fault makes a small file's ingest long.
BIG_BYTES_STANDIN = 3_000_000


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = nspawn.can_nspawn()
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"e2e: {reason}"))


@pytest.fixture(scope="session")
def e2e_rootfs() -> Path:
    """The cached Debian 12 rootfs with the project's dependencies in /opt/irods-ingestd."""
    t0 = time.monotonic()
    root = rootfs.deps_rootfs()
    print(f"\n[e2e] rootfs {root} ready in {time.monotonic() - t0:.1f}s")
    return root


@pytest.fixture(scope="session")
def e2e_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's wheel, built once per test session (the project changes every run)."""
    return rootfs.project_wheelhouse(tmp_path_factory.mktemp("wheels"))


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "run"
    d.mkdir()
    yield d


def free_port() -> int:
    """A TCP port free on the host's loopback now (for the container's Redis on the host's network)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    """Does something accept connections on the host's 127.0.0.1:``port``?"""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


@dataclass
class E2eIrods:
    """The iRODS server of one scenario run, and the facts the container gets in its run directory:

    ``/e2e/irods_environment.json`` (the daemon's iRODS client environment), ``/e2e/irods-password``
    and ``/e2e/e2e.env`` (shell assignments: which server, the run's collection, Redis port, ...).
    """

    real: RealIrodsServer | None  # None: the test server inside the container
    env: dict[str, Any]
    password: str
    collection: str  # a collection of this run only; the zones' collections are below it
    redis_port: int
    big_bytes: int

    @property
    def kind(self) -> str:
        return "real" if self.real is not None else "standin"

    def shell_env(self) -> dict[str, str]:
        return {
            "E2E_IRODS": self.kind,
            "E2E_IRODS_HOST": str(self.env["irods_host"]),
            "E2E_IRODS_PORT": str(self.env["irods_port"]),
            "E2E_IRODS_USER": str(self.env["irods_user_name"]),
            "E2E_IRODS_ZONE": str(self.env["irods_zone_name"]),
            "E2E_COLLECTION": self.collection,
            "E2E_REDIS_PORT": str(self.redis_port),
            "E2E_BIG_BYTES": str(self.big_bytes),
        }

    def write(self, run_dir: Path) -> None:
        (run_dir / "irods_environment.json").write_text(json.dumps(self.env, indent=2) + "\n")
        pw = run_dir / "irods-password"
        pw.touch(mode=0o600)
        pw.write_text(self.password)
        (run_dir / "e2e.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in self.shell_env().items()))

    def remove_collection(self) -> None:
        """Remove the run's collection from the real server (nothing to do for the test server, whose
        catalog lived in the container)."""
        if self.real is None:
            return
        with self.real.session() as s:
            if s.collections.exists(self.collection):
                s.collections.remove(self.collection, recurse=True, force=True)
            assert not s.collections.exists(self.collection), f"{self.collection} is still there"


def _container_env(env: dict[str, Any]) -> dict[str, Any]:
    """The daemon's irods_environment.json for a server described by ``env``: its address and user, with
    the settings the project's packaging documents (native authentication, no TLS, SHA-256)."""
    out: dict[str, Any] = {
        "irods_host": env["irods_host"],
        "irods_port": int(env.get("irods_port", 1247)),
        "irods_user_name": env["irods_user_name"],
        "irods_zone_name": env["irods_zone_name"],
        "irods_authentication_scheme": env.get("irods_authentication_scheme", "native"),
        "irods_home": env.get("irods_home") or f"/{env['irods_zone_name']}/home/{env['irods_user_name']}",
        "irods_client_server_policy": env.get("irods_client_server_policy", "CS_NEG_REFUSE"),
        "irods_default_hash_scheme": env.get("irods_default_hash_scheme", "SHA256"),
    }
    if env.get("irods_default_resource"):
        out["irods_default_resource"] = env["irods_default_resource"]
    return out


STANDIN_ENV = {
    "irods_host": "127.0.0.1",
    "irods_port": 1247,
    "irods_user_name": "rods",
    "irods_zone_name": "tempZone",
    "irods_default_resource": "demoResc",
}


@pytest.fixture
def e2e_irods(irods_real: RealIrodsServer | None) -> Iterator[E2eIrods]:
    """The iRODS server for this run (see :class:`E2eIrods`); a real server's run collection is removed
    afterwards, whatever happened."""
    if irods_real is not None:
        env = _container_env(irods_real.env)
        password = irods_real.password
        big = BIG_BYTES_REAL
    else:
        env = _container_env(STANDIN_ENV)
        password = "rods"
        big = BIG_BYTES_STANDIN
    target = E2eIrods(
        real=irods_real,
        env=env,
        password=password,
        collection=f"{env['irods_home']}/e2e-{uuid.uuid4().hex[:12]}",
        redis_port=free_port(),
        big_bytes=big,
    )
    print(f"\n[e2e] iRODS: {target.kind} server {env['irods_host']}:{env['irods_port']}, collection "
          f"{target.collection}, container Redis on port {target.redis_port}")
    try:
        yield target
    finally:
        target.remove_collection()
    # On the host's network, the container's Redis would still answer if the container outlived nspawn.
    assert not listening(target.redis_port), f"port {target.redis_port} (the container's Redis) still answers"
