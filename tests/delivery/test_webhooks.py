"""Webhooks posted to a real HTTP server on loopback: success, retry with backoff, refusal, expiry."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from smtp_server import free_port
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from webhook_receiver import Receiver, receiving

from playbookd.config.settings import load_config
from playbookd.delivery import webhooks
from playbookd.store.schema import audit
from playbookd.store.schema import webhooks as table

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


def queue(engine: Engine, url: str, key: str = "7:4", created: datetime = NOW) -> None:
    with engine.begin() as conn:
        conn.execute(insert(table).values(key=key, account_id="ACC-1", playbook_id="no-login-7d", url=url,
                                          body={"text": "Acme Corp inactive"}, state="queued", attempts=0,
                                          not_before=created, created_at=created))


def row(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(table)).one()


def audit_events(engine: Engine) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        return [(r.event, r.reason) for r in conn.execute(select(audit).order_by(audit.c.id))]


def test_posts_json_with_idempotency_key_once(engine: Engine, receiver: Receiver) -> None:
    queue(engine, receiver.url)
    report = webhooks.post_due(engine, timedelta(days=1), clock=lambda: NOW, allow_private=True)
    assert (report.sent, report.retried, report.failed) == (1, 0, 0)
    headers, body = receiver.requests[0]
    assert body == {"text": "Acme Corp inactive"}
    assert headers["Idempotency-Key"] == "7:4" and headers["Content-Type"] == "application/json"
    assert row(engine).state == "sent"
    assert webhooks.post_due(engine, timedelta(days=1), clock=lambda: NOW, allow_private=True).sent == 0
    assert len(receiver.requests) == 1
    assert audit_events(engine) == [(webhooks.WEBHOOK_SENT, None)]


def test_server_error_is_retried_after_backoff(engine: Engine, receiver: Receiver) -> None:
    receiver.replies = [503]
    queue(engine, receiver.url)
    assert webhooks.post_due(engine, timedelta(days=1), clock=lambda: NOW, allow_private=True).retried == 1
    deferred = row(engine)
    assert deferred.state == "queued" and deferred.attempts == 1 and "503" in deferred.last_error
    later, much_later = NOW + timedelta(seconds=30), NOW + timedelta(minutes=2)
    assert webhooks.post_due(engine, timedelta(days=1), clock=lambda: later, allow_private=True).sent == 0
    assert webhooks.post_due(engine, timedelta(days=1), clock=lambda: much_later, allow_private=True).sent == 1
    assert len(receiver.requests) == 2


def test_client_error_fails_for_good(engine: Engine, receiver: Receiver) -> None:
    receiver.replies = [404]
    queue(engine, receiver.url)
    assert webhooks.post_due(engine, timedelta(days=1), clock=lambda: NOW, allow_private=True).failed == 1
    assert row(engine).state == "failed"
    assert audit_events(engine) == [(webhooks.WEBHOOK_FAILED, "rejected")]


def test_unreachable_receiver_gives_up_after_max_age(engine: Engine) -> None:
    queue(engine, f"http://127.0.0.1:{free_port()}/hook")
    assert webhooks.post_due(engine, timedelta(hours=1), clock=lambda: NOW, allow_private=True).retried == 1
    later = NOW + timedelta(hours=2)
    assert webhooks.post_due(engine, timedelta(hours=1), clock=lambda: later, allow_private=True).failed == 1
    assert row(engine).state == "failed"
    assert audit_events(engine)[-1] == (webhooks.WEBHOOK_FAILED, "expired")


@pytest.mark.parametrize("url", ["/notify", "ftp://example.test/hook", "http:///hook", "not a url"])
def test_a_bad_url_fails_its_own_webhook_and_the_next_one_is_posted(engine: Engine, receiver: Receiver,
                                                                    url: str) -> None:
    queue(engine, url, key="1:0")  # e.g. "${NOTIFY_BASE}/notify" with the variable unset
    queue(engine, receiver.url, key="2:0")
    report = webhooks.post_due(engine, timedelta(days=1), clock=lambda: NOW, allow_private=True)
    assert (report.failed, report.sent) == (1, 1)
    with engine.connect() as conn:
        rows = {r.key: r for r in conn.execute(select(table))}
    assert rows["1:0"].state == "failed" and url in rows["1:0"].last_error
    assert rows["2:0"].state == "sent" and len(receiver.requests) == 1


def test_a_private_address_is_refused_unless_allowed(engine: Engine, receiver: Receiver) -> None:
    queue(engine, receiver.url)  # the receiver listens on loopback
    assert webhooks.post_due(engine, timedelta(days=1), clock=lambda: NOW).failed == 1
    assert receiver.requests == []
    assert "leads to the private address 127.0.0.1" in row(engine).last_error


@pytest.mark.parametrize(("url", "private"), [
    ("http://127.0.0.1:9/x", "127.0.0.1"), ("http://[::1]/x", "::1"), ("http://10.1.2.3/x", "10.1.2.3"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254"), ("http://192.168.0.1/", "192.168.0.1"),
    ("http://8.8.8.8/hook", None),
])
def test_private_targets(url: str, private: str | None) -> None:
    assert webhooks.private_target(url) == private


def signed_ok(secret: str, raw: bytes, header: str) -> bool:
    """What a receiver does with Playbookd-Signature (the README's recipe)."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def authorise(tmp_path: Path, receivers: list[dict[str, Any]]) -> webhooks.Authorise:
    path = tmp_path / "config.yaml"
    path.write_text('company: {name: Acme, postal_address: "1 Main St"}\n'
                    f"webhooks: {json.dumps({'receivers': receivers})}\n")
    return webhooks.authoriser(load_config(path))


def test_a_covered_receiver_gets_its_headers_and_a_signature_it_can_check(engine: Engine, receiver: Receiver,
                                                                           tmp_path: Path) -> None:
    secret = "s3cret-of-at-least-16"
    queue(engine, receiver.url)
    choose = authorise(tmp_path, [{"url": receiver.url.rsplit("/", 1)[0] + "/", "secret": secret,
                                   "headers": {"Authorization": "Bearer t0ken"}}])
    before = int(time.time())
    assert webhooks.post_due(engine, timedelta(days=1), clock=lambda: NOW, allow_private=True,
                             authorise=choose).sent == 1
    (headers, _), raw = receiver.requests[0], receiver.raw[0]
    assert headers["Authorization"] == "Bearer t0ken"
    assert signed_ok(secret, raw, headers["Playbookd-Signature"])
    assert not signed_ok("another-secret-16chars", raw, headers["Playbookd-Signature"])
    assert not signed_ok(secret, raw.replace(b"Acme", b"Evil"), headers["Playbookd-Signature"])
    assert before <= int(headers["Playbookd-Signature"].split(",")[0][2:]) <= int(time.time())


def test_a_receiver_nobody_configured_gets_no_credentials(engine: Engine, receiver: Receiver, tmp_path: Path) -> None:
    queue(engine, receiver.url)
    choose = authorise(tmp_path, [{"url": f"http://127.0.0.1:{free_port()}/", "secret": "s3cret-of-at-least-16",
                                   "headers": {"Authorization": "Bearer t0ken"}}])
    webhooks.post_due(engine, timedelta(days=1), clock=lambda: NOW, allow_private=True, authorise=choose)
    headers, _ = receiver.requests[0]
    assert "Authorization" not in headers and "Playbookd-Signature" not in headers


@pytest.mark.parametrize(("prefix", "url", "covered"), [
    ("https://crm.example.com", "https://crm.example.com/hooks/1", True),
    ("https://crm.example.com/hooks/", "https://CRM.example.com/hooks/1", True),
    ("https://crm.example.com", "https://crm.example.com.attacker.net/hooks", False),
    ("https://crm.example.com", "http://crm.example.com/hooks", False),
    ("https://crm.example.com", "https://crm.example.com:8443/hooks", False),
    ("https://crm.example.com/hooks/", "https://crm.example.com/other", False),
    ("https://crm.example.com/hooks/", "https://user@crm.example.com/hooks/1", True),
    ("https://crm.example.com/tenant-a", "https://crm.example.com/tenant-a/hook", True),
    ("https://crm.example.com/tenant-a", "https://crm.example.com/tenant-a", True),
    ("https://crm.example.com/tenant-a", "https://crm.example.com/tenant-ab/hook", False),
])
def test_a_receiver_covers_its_origin_and_path_only(prefix: str, url: str, covered: bool) -> None:
    assert webhooks.covers(prefix, url) is covered


def test_the_longest_matching_receiver_wins(tmp_path: Path) -> None:
    choose = authorise(tmp_path, [{"url": "https://crm.example.com/", "headers": {"X-Which": "any"}},
                        {"url": "https://crm.example.com/tasks/", "headers": {"X-Which": "tasks"}}])
    assert choose("https://crm.example.com/tasks/7", None).headers == {"X-Which": "tasks"}
    assert choose("https://crm.example.com/notes", None).headers == {"X-Which": "any"}


def test_a_redirect_is_refused_and_not_followed(engine: Engine, receiver: Receiver, tmp_path: Path) -> None:
    """Following it would carry the credentials, and the request, to an address nobody checked."""
    with receiving() as elsewhere:
        receiver.redirect_to = elsewhere.url
        queue(engine, receiver.url)
        choose = authorise(tmp_path, [{"url": receiver.url, "headers": {"Authorization": "Bearer t0ken"}}])
        assert webhooks.post_due(engine, timedelta(days=1), clock=lambda: NOW, allow_private=True,
                                 authorise=choose).failed == 1
        assert elsewhere.requests == []
    assert "HTTP 307" in row(engine).last_error and elsewhere.url in row(engine).last_error
    assert "redirects are not followed" in row(engine).last_error
