"""sd_notify(3) without a hard dependency on systemd-python.

With ``systemd-python`` importable and the process's own environment in use, messages go through
``systemd.daemon.notify``; otherwise they are sent as datagrams to ``$NOTIFY_SOCKET`` directly (a
path, or an abstract socket written ``@name``). Outside systemd (no ``NOTIFY_SOCKET``) every call is a
cheap no-op. Sending never raises: a daemon must not die because its supervisor went away.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

_sd_notify: Callable[..., bool] | None
try:  # pragma: no cover - depends on the installed extras
    from systemd import daemon as _daemon

    _sd_notify = _daemon.notify
except ImportError:  # pragma: no cover
    _sd_notify = None


def _address(value: str) -> str:
    """NOTIFY_SOCKET -> an AF_UNIX address (``@x`` is the abstract socket ``\\0x``)."""
    if value.startswith("@"):
        return "\0" + value[1:]
    return value


class Notifier:
    """Tell the service manager about the daemon's state (``Type=notify`` units)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._own_environ = environ is None
        self._environ: Mapping[str, str] = os.environ if environ is None else dict(environ)
        self._socket_path = self._environ.get("NOTIFY_SOCKET") or None
        self.enabled: bool = self._socket_path is not None
        self._sock: socket.socket | None = None
        # systemd-python reads os.environ itself: use it only when that is the environment we serve.
        self._use_libsystemd = _sd_notify is not None and self._own_environ

    # -- the messages ----------------------------------------------------------------------------
    def ready(self, status: str | None = None) -> None:
        self._send("READY=1", *([f"STATUS={status}"] if status is not None else []))

    def status(self, text: str) -> None:
        self._send(f"STATUS={text}")

    def reloading(self) -> None:
        # MONOTONIC_USEC is required by Type=notify-reload (systemd >= 253) and ignored before.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of WatchdogSec=), or None if no watchdog is due."""
        raw = self._environ.get("WATCHDOG_USEC")
        if not raw:
            return None
        pid = self._environ.get("WATCHDOG_PID")
        if pid:
            try:
                if int(pid) != os.getpid():
                    return None
            except ValueError:
                return None
        try:
            usec = int(raw)
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / 2 / 1e6

    # -- transport -------------------------------------------------------------------------------
    def _send(self, *lines: str) -> None:
        if not self.enabled or self._socket_path is None:
            return
        # One assignment per line: a newline inside a value (a file name in STATUS=) would start a
        # bogus assignment, so flatten it.
        payload = "\n".join(line.replace("\n", " ") for line in lines)
        if self._use_libsystemd and _sd_notify is not None:
            try:
                _sd_notify(payload)
            except Exception:  # noqa: BLE001 - never let notification failures kill the daemon
                log.debug("sd_notify failed", exc_info=True)
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload.encode(), _address(self._socket_path))
        except OSError:
            log.debug("sd_notify to %s failed", self._socket_path, exc_info=True)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
