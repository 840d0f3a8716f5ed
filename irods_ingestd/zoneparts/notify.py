"""Notifications of a zone's events: an HTTP POST of a JSON document to the zone's webhook.

Keys of a ``[[zone]]`` table::

    webhook = "https://hooks.example.org/ingest?token=..."   # http:// or https://; "" = none (the default)
    webhook_events = ["failed", "completed", "zone_lost"]    # the default: all of them
    webhook_timeout = "5s"                                   # one attempt's timeout (0.1s to 60s)
    webhook_retries = 3                                      # attempts after the first (0 to 10)

The URL may carry a secret (a token in the query, user:password@): it is never logged, and messages about it
show it redacted (:func:`irods_ingestd.notify.redact`). What is sent and when: :mod:`irods_ingestd.notify`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..config_parse import Checker, parse_duration

KEYS: frozenset[str] = frozenset({"webhook", "webhook_events", "webhook_timeout", "webhook_retries"})

EVENTS = ("failed", "completed", "zone_lost")


@dataclass(frozen=True)
class Notify:
    webhook: str = field(default="", repr=False)  # may hold a secret: never in a repr or a log
    webhook_events: tuple[str, ...] = EVENTS
    webhook_timeout: float = 5.0
    webhook_retries: int = 3

    def wants(self, event: str) -> bool:
        return bool(self.webhook) and event in self.webhook_events


def redact(url: str) -> str:
    """The URL without its user info, with its query and fragment hidden, and its path after the first
    segment hidden (safe to log: Slack, Mattermost, Discord and Teams webhooks carry their token in the
    path, `/services/T…/B…/<token>`)."""
    try:
        u = urlsplit(url)
        host = u.hostname or ""
        port = f":{u.port}" if u.port else ""
    except ValueError:
        return "<an invalid URL>"
    host = f"[{host}]" if ":" in host else host
    first, sep, rest = u.path.lstrip("/").partition("/")
    path = (f"/{first}" if first or u.path else "") + ("/…" if sep and rest else sep)
    return f"{u.scheme}://{host}{port}{path}" + ("?…" if u.query else "") + ("#…" if u.fragment else "")


def check(c: Checker, where: str, raw: dict[str, Any]) -> Notify:
    d = Notify()
    url = c.get(where, raw, "webhook", str, "")
    if url:
        try:
            u = urlsplit(url)
            ok = u.scheme in ("http", "https") and bool(u.hostname) and (u.port is None or u.port > 0)
        except ValueError:
            ok = False
        if not ok:
            c.problems.append(f"{where}.webhook: {redact(url)} is not an http:// or https:// URL with a host")
            url = ""
    events = c.strings(where, raw, "webhook_events", EVENTS)
    for e in events:
        if e not in EVENTS:
            c.problems.append(f"{where}.webhook_events: {e!r} is not one of {', '.join(EVENTS)}")
    events = tuple(e for e in events if e in EVENTS)
    timeout = c.conv(where, raw, "webhook_timeout", parse_duration, d.webhook_timeout)
    if not 0.1 <= timeout <= 60:
        c.problems.append(f"{where}.webhook_timeout: must be between 0.1s and 60s (one attempt's timeout), "
                          f"not {timeout:g}s")
    retries = c.get(where, raw, "webhook_retries", int, d.webhook_retries)
    if not 0 <= retries <= 10:
        c.problems.append(f"{where}.webhook_retries: must be 0 to 10, not {retries}")
    if not url and ("webhook_events" in raw or "webhook_timeout" in raw or "webhook_retries" in raw) \
            and "webhook" not in raw:
        c.problems.append(f"{where}.webhook: missing (webhook_events, webhook_timeout and webhook_retries "
                          f"need a webhook)")
    return Notify(webhook=url, webhook_events=events, webhook_timeout=timeout, webhook_retries=retries)
