"""Fixtures for the systemd end-to-end tests (real systemd as PID 1 under systemd-nspawn).

The tests are skipped, with the reason, only where a container cannot be booted at all (not root,
systemd-nspawn or debootstrap missing). Everything else (building the rootfs, booting) failing is a
test failure. The rootfs is cached outside the checkout (``INGESTD_E2E_CACHE``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import nspawn, rootfs


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
