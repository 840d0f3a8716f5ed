"""Reconfigure the real iRODS server of ../shared/irods for a test, and put it back afterwards.

Only for the server that ``.ci/irods.sh`` installed with ../shared/irods/install-irods.sh on this machine
(its config is /etc/irods/server_config.json, and the script stops and starts it in about 3 s).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.irods_server.harness import REPO_ROOT

INSTALL = REPO_ROOT.parent / "shared" / "irods" / "install-irods.sh"
SERVER_CONFIG = Path("/etc/irods/server_config.json")


def _restart() -> None:
    env = {k: v for k, v in os.environ.items() if k != "INGESTD_TEST_RUN"}  # the server is no test process
    for args in (["stop"], []):
        r = subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stdout + r.stderr


@contextmanager
def server_config(**changes: object) -> Iterator[None]:
    """The real server runs with these server_config.json keys changed (restarted), then as before."""
    if not INSTALL.is_file() or not SERVER_CONFIG.is_file():
        pytest.skip("needs the real iRODS of ../shared/irods installed on this machine")
    original = SERVER_CONFIG.read_text()
    conf = json.loads(original)
    conf.update(changes)
    SERVER_CONFIG.write_text(json.dumps(conf, indent=4) + "\n")
    try:
        _restart()
        yield
    finally:
        SERVER_CONFIG.write_text(original)
        _restart()
