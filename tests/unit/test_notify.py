"""Webhook notifications (issue 15.2): the zone part's checks, the URL never logged with its secret, the
POSTed document, retries and giving up, and a full queue dropping (never blocking) with a logged count."""

from __future__ import annotations

import logging
import time

import pytest

from irods_ingestd import notify
from irods_ingestd.config_parse import Checker
from irods_ingestd.zoneparts import notify as part
from irods_ingestd.zoneparts.notify import Notify, redact
from tests.webhook_receiver import Receiver


def check(raw: dict) -> tuple[Notify, list[str]]:
    c = Checker()
    n = part.check(c, "zone 'z'", raw)
    return n, c.problems


def test_defaults_send_nothing() -> None:
    n, problems = check({})
    assert problems == [] and n.webhook == "" and not n.wants("failed")


def test_a_webhook_with_its_options() -> None:
    n, problems = check({"webhook": "https://h.example/p?token=x", "webhook_events": ["failed"],
                         "webhook_timeout": "2s", "webhook_retries": 1})
    assert problems == []
    assert n.wants("failed") and not n.wants("zone_lost")
    assert (n.webhook_timeout, n.webhook_retries) == (2.0, 1)


@pytest.mark.parametrize("raw, field", [
    ({"webhook": "ftp://u:pw@h/p?token=SECRET"}, "webhook"),
    ({"webhook": "https:///nohost?token=SECRET"}, "webhook"),
    ({"webhook": "https://h/p?token=SECRET", "webhook_events": ["failed", "done"]}, "webhook_events"),
    ({"webhook": "https://h/p?token=SECRET", "webhook_timeout": "2m"}, "webhook_timeout"),
    ({"webhook": "https://h/p?token=SECRET", "webhook_timeout": "soon"}, "webhook_timeout"),
    ({"webhook": "https://h/p?token=SECRET", "webhook_retries": 11}, "webhook_retries"),
    ({"webhook_events": ["failed"]}, "webhook"),
])
def test_bad_values_are_named_by_zone_and_field_without_the_secret(raw: dict, field: str) -> None:
    _, problems = check(raw)
    assert problems, raw
    assert all(p.startswith(f"zone 'z'.{field}:") for p in problems), problems
    assert not any("SECRET" in p or ":pw@" in p for p in problems), problems


def test_redact_hides_user_info_query_and_fragment() -> None:
    assert redact("https://user:pw@h.example:8443/a/b?token=x&y=1#frag") == "https://h.example:8443/a/…?…#…"
    assert redact("http://h/p") == "http://h/p"
    assert redact("http://h/p/") == "http://h/p/"
    assert redact("http://h") == "http://h"
    assert redact("http://h/") == "http://h/"


def test_redact_hides_a_token_in_the_path() -> None:
    """Slack, Discord and Mattermost webhooks carry their secret in the path."""
    slack = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
    assert redact(slack) == "https://hooks.slack.com/services/…"
    assert "XXXX" not in redact("https://discord.com/api/webhooks/123/XXXXtoken")


def test_a_document_is_posted_as_json_with_the_common_fields() -> None:
    with Receiver() as rx:
        n = Notify(webhook=rx.url())
        assert notify.file_failed(n, "z", "/landing/a.dat", "/tempZone/home/rods/a.dat", "no permission",
                                  "permanent", 12, 34)
        (doc,) = rx.wait_docs(1)
    assert doc["event"] == "failed" and doc["zone"] == "z" and doc["source"] == "irods-ingestd"
    assert doc["path"] == "/landing/a.dat" and doc["object"] == "/tempZone/home/rods/a.dat"
    assert (doc["reason"], doc["kind"], doc["size"], doc["mtime_ns"]) == ("no permission", "permanent", 12, 34)
    assert doc["host"] and doc["time"].endswith("Z")
    path, headers = rx.requests[0]
    assert path == "/hook?token=s3cr3t-token" and headers["Content-Type"] == "application/json"


def test_an_event_the_zone_did_not_ask_for_is_not_sent() -> None:
    with Receiver() as rx:
        n = Notify(webhook=rx.url(), webhook_events=("zone_lost",))
        assert not notify.send(n, "failed", {"zone": "z"})
        assert notify.send(n, "zone_lost", {"zone": "z"})
        assert [d["event"] for d in rx.wait_docs(1)] == ["zone_lost"]


def test_500_is_retried_then_given_up_with_a_log_that_hides_the_secret(monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(notify, "BACKOFF_FIRST", 0.05)
    caplog.set_level(logging.DEBUG, logger="irods_ingestd.notify")
    with Receiver(status=500) as rx:
        n = Notify(webhook=rx.url(), webhook_retries=2, webhook_timeout=1.0)
        t0 = time.monotonic()
        assert notify.send(n, "failed", {"zone": "z"})
        assert time.monotonic() - t0 < 0.05  # send() does not wait for the receiver
        assert notify.flush(10)
        assert rx.attempts == 3
    given_up = [r.getMessage() for r in caplog.records if "given up" in r.getMessage()]
    assert given_up and "after 3 attempts: HTTP 500" in given_up[0], given_up
    assert "s3cr3t" not in caplog.text and f"127.0.0.1:{rx.port}/hook?…" in given_up[0]


def test_a_4xx_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "BACKOFF_FIRST", 0.05)
    with Receiver(status=404) as rx:
        notify.send(Notify(webhook=rx.url(), webhook_retries=3), "failed", {"zone": "z"})
        assert notify.flush(10)
        assert rx.attempts == 1


def test_a_hanging_receiver_times_out_and_a_full_queue_drops_with_a_count(monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(notify, "QUEUE_MAX", 3)
    monkeypatch.setattr(notify, "BACKOFF_FIRST", 0.01)
    caplog.set_level(logging.WARNING, logger="irods_ingestd.notify")
    with Receiver(delay=5.0) as rx:
        n = Notify(webhook=rx.url("/slow?token=s3cr3t-token"), webhook_retries=0, webhook_timeout=0.2)
        t0 = time.monotonic()
        sent = [notify.send(n, "failed", {"zone": "z", "i": i}) for i in range(10)]
        assert time.monotonic() - t0 < 0.5  # never blocks, whatever the receiver does
        assert sent.count(False) >= 6  # 3 wait, at most one is being sent: the rest are dropped
        assert notify.flush(10)
        assert 1 <= rx.attempts <= 4
    assert any("dropped" in r.getMessage() and "1 dropped so far" in r.getMessage() for r in caplog.records)
    assert any("no answer within 0.2s" in r.getMessage() for r in caplog.records)
    assert "s3cr3t" not in caplog.text


def test_completed_carries_what_the_completion_rule_adds() -> None:
    with Receiver() as rx:
        n = Notify(webhook=rx.url())
        assert notify.completed(n, "z", "/landing/run7", "/tempZone/home/rods/run7", files=3, bytes=300)
        (doc,) = rx.wait_docs(1)
    assert (doc["event"], doc["path"], doc["object"], doc["files"], doc["bytes"]) == \
        ("completed", "/landing/run7", "/tempZone/home/rods/run7", 3, 300)
