"""Webhook notifications: a JSON document POSTed to a zone's `webhook` on the events it asks for.

    notify.send(zone.notify, "completed", {"zone": "z", "path": "/landing/run42", "object": "/tempZone/...",
                                           "files": 12, "bytes": 4096})

`send` never blocks and never raises: the document goes into a bounded queue (QUEUE_MAX documents) of the
webhook's own background thread (one per URL, so a receiver that hangs delays only its own documents); when
that queue is full the document is dropped, counted (`irods_ingestd_webhooks_total{outcome="dropped"}`) and
logged at most once a minute with the count so far. The thread POSTs each document (Content-Type
application/json, one attempt's timeout `webhook_timeout`), retrying a network error, a timeout, HTTP 408,
429 and 5xx `webhook_retries` times with backoff (1 s, 2 s, 4 s ... at most 30 s); another 4xx is not
retried. A document given up on is logged with the reason. At exit a process waits up to FLUSH_AT_EXIT s for
what is still queued. The URL is logged only redacted (no user info, no query).

The document (every event): ``event`` (failed | completed | zone_lost), ``zone``, ``host`` (the sender's),
``time`` (UTC, ISO 8601), ``source`` ("irods-ingestd"), ``path`` (the landing file, directory or zone
directory), ``object`` (its iRODS path: data object or collection); then per event:

* ``failed`` (a worker recorded a file as failed for good; `status` lists it, `retry` queues it again):
  ``reason``, ``kind`` (permanent, transient: failing longer than give_up_after, ...), ``size``, ``mtime_ns``;
* ``zone_lost`` (the daemon stopped watching a zone: its directory is gone, unmounted or aliased): ``reason``;
* ``completed`` (a directory or run complete and verified): what the caller adds, e.g. ``files``, ``bytes``.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import __version__
from .config import Config
from .metrics import WEBHOOKS
from .zoneparts.notify import Notify, redact

log = logging.getLogger(__name__)

QUEUE_MAX = 1000
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
IDLE_EXIT = 60.0  # a webhook's thread ends after this long without documents (a new one starts on demand)
DROP_LOG_EVERY = 60.0
FLUSH_AT_EXIT = 5.0
USER_AGENT = f"irods-ingestd/{__version__}"


@dataclass(frozen=True)
class _Doc:
    notify: Notify
    event: str
    body: bytes


class _Channel:
    """One webhook URL: its queue and its thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = redact(url)
        self.q: queue.Queue[_Doc] = queue.Queue(QUEUE_MAX)
        self.dropped = 0
        self._dropped_logged = 0.0
        self.thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self.thread.start()

    def offer(self, doc: _Doc) -> bool:
        try:
            self.q.put_nowait(doc)
            return True
        except queue.Full:
            self.dropped += 1
            WEBHOOKS.labels(doc.event, "dropped").inc()
            now = time.monotonic()
            if now - self._dropped_logged >= DROP_LOG_EVERY:
                self._dropped_logged = now
                log.warning("webhook %s: %d documents wait for it (the receiver is slow or away): a %s "
                            "notification was dropped (%d dropped so far)", self.shown, QUEUE_MAX, doc.event,
                            self.dropped)
            return False

    def _run(self) -> None:
        while True:
            try:
                doc = self.q.get(timeout=IDLE_EXIT)
            except queue.Empty:
                with _lock:
                    if self.q.empty():
                        _channels.pop(self.url, None)
                        return
                continue
            try:
                self._deliver(doc)
            except Exception:  # noqa: BLE001 - a notification must never end the thread
                log.exception("webhook %s: sending a %s notification failed", self.shown, doc.event)
            finally:
                self.q.task_done()

    def _deliver(self, doc: _Doc) -> None:
        n = doc.notify
        attempts = 1 + n.webhook_retries
        why = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempt - 1)))
            retry, why = _post(self.url, doc.body, n.webhook_timeout)
            if not why:
                WEBHOOKS.labels(doc.event, "sent").inc()
                return
            if not retry:
                break
            log.debug("webhook %s: attempt %d of %d failed: %s", self.shown, attempt + 1, attempts, why)
        WEBHOOKS.labels(doc.event, "failed").inc()
        log.warning("webhook %s: a %s notification was given up after %d attempt%s: %s", self.shown, doc.event,
                    attempt + 1, "" if attempt == 0 else "s", why)


def _post(url: str, body: bytes, timeout: float) -> tuple[bool, str]:
    """One POST: (worth retrying, why it failed); ("", ...) means it was taken (2xx)."""
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) only (checked)
            resp.read(65536)
            return False, ""
    except urllib.error.HTTPError as e:
        return e.code in (408, 429) or e.code >= 500, f"HTTP {e.code}"
    except TimeoutError:
        return True, f"no answer within {timeout:g}s"
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, TimeoutError):
            return True, f"no answer within {timeout:g}s"
        return True, _scrub(str(getattr(reason, "strerror", None) or reason), url)
    except (OSError, ValueError) as e:
        return True, _scrub(f"{type(e).__name__}: {e}", url)


def _scrub(text: str, url: str) -> str:
    """An error's text without the URL or any of its secret parts."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    for secret in (url, u.path if u.path.count("/") > 1 else "", u.query, u.password or "", u.username or ""):
        if secret:
            text = text.replace(secret, "…")
    return text


_lock = threading.Lock()
_channels: dict[str, _Channel] = {}
_host = socket.gethostname()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def send(n: Notify, event: str, doc: Mapping[str, Any]) -> bool:
    """Queue a notification of `event` if the zone's `n` asks for it; True if queued. Never blocks or raises.
    `doc` holds at least ``zone``, ``path``, ``object``; ``event``, ``host``, ``time`` and ``source`` are
    added (values the doc already has win, except ``event``)."""
    if not n.wants(event):
        return False
    try:
        full = {"event": event, "zone": "", "host": _host, "time": now_iso(), "source": "irods-ingestd",
                **doc}
        full["event"] = event
        body = json.dumps(full, default=str).encode()
        with _lock:
            ch = _channels.get(n.webhook)
            if ch is None:
                ch = _channels[n.webhook] = _Channel(n.webhook)
            return ch.offer(_Doc(n, event, body))
    except Exception:  # noqa: BLE001 - a notification must never disturb the ingest
        log.exception("webhook %s: could not queue a %s notification", redact(n.webhook), event)
        return False


def of(config: Config, zone: str) -> Notify:
    """A zone's webhook settings from this process's own config (a worker's too: job records in Redis never
    carry them, a webhook URL may hold a token); none for a zone the config does not name."""
    try:
        return config.zone(zone).notify
    except KeyError:
        return Notify()


def file_failed(n: Notify, zone: str, path: str, obj: str, reason: str, kind: str, size: int,
                mtime_ns: int) -> bool:
    """A worker recorded a file as failed for good."""
    return send(n, "failed", {"zone": zone, "path": path, "object": obj, "reason": reason, "kind": kind,
                              "size": size, "mtime_ns": mtime_ns})


def zone_lost(n: Notify, zone: str, path: str, collection: str, reason: str) -> bool:
    """The daemon stopped watching a zone (state lost)."""
    return send(n, "zone_lost", {"zone": zone, "path": path, "object": collection, "reason": reason})


def completed(n: Notify, zone: str, path: str, obj: str, **fields: Any) -> bool:
    """A directory or run is complete and verified (the completion rules call this): path is the landing
    directory, obj its collection, fields what else the rule knows (files, bytes, ...)."""
    return send(n, "completed", {"zone": zone, "path": path, "object": obj, **fields})


def flush(timeout: float) -> bool:
    """Wait up to `timeout` s until every queued document was sent or given up; True if none is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _lock:
            pending = [ch for ch in _channels.values() if ch.q.unfinished_tasks]
        if not pending:
            return True
        time.sleep(0.05)
    return False


def _at_exit() -> None:
    if not flush(FLUSH_AT_EXIT):
        with _lock:
            left = sum(ch.q.unfinished_tasks for ch in _channels.values())
        if left:
            log.warning("exiting with %d webhook notifications not sent", left)


atexit.register(_at_exit)
