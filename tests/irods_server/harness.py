"""Start/stop the iRODS test server as a subprocess and drive its fault injection from Python.

Typical use::

    srv = IrodsServerProcess(workdir=tmp_path)
    srv.start()
    with srv.session() as sess:
        sess.collections.create("/tempZone/home/rods/x")
    srv.fail_next("DATA_OBJ_WRITE", count=1, error=-510002)
    srv.stop()
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
_READY = re.compile(r"listening on (\S+):(\d+) control-port (\d+)")


class ServerStartError(RuntimeError):
    pass


@contextmanager
def server_readable_dir(prefix: str = "irods-reg-") -> Iterator[Path]:
    """A new directory the server's service account can search and list (mode 0755), for files to register.

    A real server reads registered files as its own unix user (``irods``), which cannot enter pytest's
    root-only temporary directories; this one is made directly under /tmp and removed afterwards. Files
    written into it with the default umask (0644) are readable too.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class IrodsServerProcess:
    real = False  # the test server, not a real iRODS (see pytest_plugin.RealIrodsServer)
    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    zone: str = "tempZone"
    user: str = "rods"
    password: str = "rods"
    version: str = "5.0.2"  # what the real server of ../shared/irods reports; "4.2.11" for legacy auth
    extra_users: list[tuple[str, str]] = field(default_factory=list)
    cs_neg_policy: str = "CS_NEG_DONT_CARE"
    startup_timeout: float = 15.0
    control_port: int = 0
    last_returncode: int | None = field(default=None, init=False)
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _ctl: socket.socket | None = field(default=None, init=False, repr=False)
    _ctl_file: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)

    # --- paths -------------------------------------------------------------------------------
    @property
    def vault(self) -> Path:
        return self.workdir / "vault"

    @property
    def catalog(self) -> Path:
        return self.workdir / "catalog.sqlite"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    @property
    def home(self) -> str:
        return f"/{self.zone}/home/{self.user}"

    def vault_path(self, logical: str) -> Path:
        """Where the server stores the bytes of a data object it created (not for registered ones)."""
        return self.vault / logical.split("/", 2)[2]

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "tests.irods_server", "--host", self.host, "--port", str(self.port),
            "--vault", str(self.vault), "--catalog", str(self.catalog), "--zone", self.zone,
            "--version", self.version, "--user", f"{self.user}:{self.password}",
            "--cs-neg-policy", self.cs_neg_policy, "--control-port", str(self.control_port),
            "--exit-with-parent",
        ]  # fmt: skip
        for name, pw in self.extra_users:
            cmd += ["--user", f"{name}:{pw}"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        offset = log.tell()
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        try:
            self._proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            m = _READY.search(text)
            if m:
                self.port = int(m.group(2))
                self.control_port = int(m.group(3))
                break
            if self._proc.poll() is not None:
                raise ServerStartError(f"test server exited with {self._proc.returncode}:\n{text}")
            time.sleep(0.01)
        else:
            self.stop()
            raise ServerStartError(f"test server did not start within {self.startup_timeout}s")
        # wait until it accepts TCP
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.01)

    def stop(self) -> None:
        self._close_ctl()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.last_returncode = proc.returncode

    def restart(self) -> None:
        """Stop and start again on the same port, with the same catalog and vault."""
        self.stop()
        self.start()

    def __enter__(self) -> IrodsServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- client side helpers -----------------------------------------------------------------
    def env_dict(self) -> dict[str, Any]:
        return {
            "irods_host": self.host,
            "irods_port": self.port,
            "irods_user_name": self.user,
            "irods_zone_name": self.zone,
            "irods_authentication_scheme": "native",
            "irods_home": self.home,
            "irods_default_resource": "demoResc",
            "irods_client_server_policy": "CS_NEG_REFUSE",
            "irods_default_hash_scheme": "SHA256",
        }

    def write_env_file(self, path: Path) -> Path:
        """Write an irods_environment.json for this server (the password is not in it)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.env_dict(), indent=2) + "\n")
        return path

    def session(self, **kw: Any) -> Any:
        from irods.session import iRODSSession

        args: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user,
                                "password": self.password, "zone": self.zone}  # fmt: skip
        args.update(kw)
        return iRODSSession(**args)

    # --- control channel ---------------------------------------------------------------------
    def _close_ctl(self) -> None:
        for obj in (self._ctl_file, self._ctl):
            if obj is not None:
                try:
                    obj.close()
                except OSError:
                    pass
        self._ctl = self._ctl_file = None

    def control(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one JSON-lines command to the server's control channel and return its answer."""
        if not self.running:
            raise RuntimeError("test server is not running")
        for attempt in range(2):
            try:
                if self._ctl is None:
                    self._ctl = socket.create_connection((self.host, self.control_port), timeout=10)
                    self._ctl_file = self._ctl.makefile("rwb")
                self._ctl_file.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
                self._ctl_file.flush()
                line = self._ctl_file.readline()
                if not line:
                    raise ConnectionError("control channel closed")
                break
            except OSError:
                self._close_ctl()
                if attempt:
                    raise
        resp = json.loads(line)
        if not resp.get("ok"):
            raise RuntimeError(f"control command {cmd!r} failed: {resp.get('error')}")
        return resp

    def refuse_connections(self, on: bool = True) -> None:
        self.control("refuse", on=on)

    def drop_connections(self) -> None:
        self.control("drop")

    def set_delay(self, seconds: float) -> None:
        self.control("delay", seconds=seconds)

    def fail_next(self, api: int | str, count: int = 1, error: int = -1, after_bytes: int | None = None) -> None:
        """Fail the next `count` calls of `api` (name like "DATA_OBJ_WRITE" or number) with `error`.

        With `after_bytes`, calls only fail once that many bytes were written (DATA_OBJ_WRITE) since now.
        """
        self.control("fail", api=api, count=count, error=error, after_bytes=after_bytes)

    def reset_faults(self) -> None:
        self.control("reset_faults")

    def counters(self) -> dict[str, int]:
        return dict(self.control("counters")["counters"])

    def reset_counters(self) -> None:
        self.control("reset_counters")
