"""A local HTTP receiver for webhook tests: http.server in a thread, answering each POST with a status
(200 by default), after an optional delay (a receiver that hangs), and keeping what it was sent."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.docs: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path with query, headers)
        self.attempts = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with me._lock:
                    me.attempts += 1
                    me.requests.append((self.path, dict(self.headers)))
                if me.delay:
                    me._stopping.wait(me.delay)
                if me.status == 200:
                    with me._lock:
                        me.docs.append(json.loads(body))
                try:
                    self.send_response(me.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "/hook?token=s3cr3t-token") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_docs(self, n: int, timeout: float = 10.0, event: str | None = None) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                docs = [d for d in self.docs if event is None or d.get("event") == event]
            if len(docs) >= n:
                return docs
            time.sleep(0.05)
        return docs
