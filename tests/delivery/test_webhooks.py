"""Webhooks posted to a real HTTP server on loopback: success, retry with backoff, refusal, expiry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from smtp_server import free_port
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from webhook_receiver import Receiver, receiving

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
