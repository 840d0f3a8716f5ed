"""sd_notify over a real unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from irods_ingestd import sdnotify
from irods_ingestd.sdnotify import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def recv(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_disabled_without_notify_socket() -> None:
    n = Notifier({})
    assert n.enabled is False
    n.ready("x")  # no-op, no error
    n.status("x")
    n.watchdog()
    n.stopping()
    n.reloading()
    assert n.watchdog_interval() is None


def test_ready_with_status(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    n.ready("watching 2 zones")
    assert recv(sock) == ["READY=1", "STATUS=watching 2 zones"]
    n.ready()
    assert recv(sock) == ["READY=1"]


def test_status_stopping_watchdog(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    n.status("3 files ingested")
    assert recv(sock) == ["STATUS=3 files ingested"]
    n.watchdog()
    assert recv(sock) == ["WATCHDOG=1"]
    n.stopping()
    assert recv(sock) == ["STOPPING=1"]


def test_status_newline_is_flattened(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    Notifier({"NOTIFY_SOCKET": path}).status("a\nREADY=1")
    assert recv(sock) == ["STATUS=a READY=1"]


def test_reloading_carries_monotonic_usec(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier({"NOTIFY_SOCKET": path}).reloading()
    lines = recv(sock)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert lines[0] == "RELOADING=1"
    key, value = lines[1].split("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after


def test_abstract_socket() -> None:
    name = "irods-ingestd-test-" + uuid.uuid4().hex
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert recv(sock) == ["READY=1"]
    finally:
        sock.close()


def test_missing_socket_does_not_raise(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.enabled
    n.ready()
    n.watchdog()


def test_os_environ_is_default(
    monkeypatch: pytest.MonkeyPatch, notify_socket: tuple[str, socket.socket]
) -> None:
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier()
    assert n.enabled
    n.ready("hello")  # via systemd.daemon.notify if installed, else the built-in sender
    assert recv(sock) == ["READY=1", "STATUS=hello"]


def test_builtin_sender_without_systemd_python(
    monkeypatch: pytest.MonkeyPatch, notify_socket: tuple[str, socket.socket]
) -> None:
    path, sock = notify_socket
    monkeypatch.setattr(sdnotify, "_sd_notify", None)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    Notifier().status("fallback")
    assert recv(sock) == ["STATUS=fallback"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "nonsense"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "abc"}, None),
        ({"WATCHDOG_USEC": "1000"}, 0.0005),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert Notifier({"NOTIFY_SOCKET": "/nonexistent", **env}).watchdog_interval() == expected
