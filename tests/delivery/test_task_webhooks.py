"""Tasks mirrored to a CRM through tasks.webhook: each version queued with the webhook steps' retries,
posted to a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from webhook_receiver import Receiver, receiving

from playbookd.cadence import tasks as work
from playbookd.delivery import webhooks
from playbookd.store.schema import tasks
from playbookd.store.schema import webhooks as table

T0 = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
CALL = ("id: call\ntrigger: {when: {status: active}}\nsteps:\n"
        "  - id: call-them\n    task: {title: \"Call {{ account.name }}\", assign: csm, due_in: 2d}\n")


@pytest.fixture
def crm() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


def project(make: Any, db_url: str, crm: Receiver) -> Any:
    return make({"call": CALL}, database=db_url, tasks={"webhook": {"url": crm.url}}, webhooks={"allow_private": True})


def test_a_created_task_and_each_change_reach_the_crm_with_retries(make: Any, db_url: str, crm: Receiver) -> None:
    p = project(make, db_url, crm)
    p.run(T0)
    (headers, created), = crm.requests
    (task,) = p.rows(tasks)
    assert headers["Idempotency-Key"] == f"task:{task.id}:1"
    assert created == {
        "event": "created", "task": task.id, "key": task.key, "revision": 1, "playbook": "call", "account": "ACC-1",
        "enrollment": task.enrollment_id, "step": "call-them", "title": "Call Harbor Foods",
        "assignee": "maria@acme.example", "due_at": (T0 + timedelta(days=2)).isoformat(), "state": "open",
        "snoozed_until": None, "note": None, "user": None, "at": T0.isoformat()}
    later = T0 + timedelta(hours=1)
    work.change(p.engine, [task.id], "done", note="called, renewal on track", user="maria", now=later,
                settings=p.config.tasks)
    crm.replies = [503]  # the CRM is down for a moment: retried with backoff, as webhook steps are
    first = webhooks.post_due(p.engine, timedelta(days=1), clock=lambda: later, allow_private=True)
    assert (first.retried, first.sent) == (1, 0)
    second = webhooks.post_due(p.engine, timedelta(days=1), clock=lambda: later + timedelta(minutes=5),
                               allow_private=True)
    assert second.sent == 1
    headers, done = crm.requests[-1]
    assert len(crm.requests) == 3 and headers["Idempotency-Key"] == f"task:{task.id}:2"
    assert {k: done[k] for k in ("event", "revision", "state", "note", "user", "at")} == {
        "event": "done", "revision": 2, "state": "done", "note": "called, renewal on track", "user": "maria",
        "at": later.isoformat()}


def test_a_refused_change_queues_no_webhook(make: Any, db_url: str, crm: Receiver) -> None:
    p = project(make, db_url, crm)
    p.run(T0)
    (task,) = p.rows(tasks)
    with pytest.raises(work.UserError):
        work.change(p.engine, [task.id, 404], "dismiss", note=None, user="maria", now=T0, settings=p.config.tasks)
    assert [r.key for r in p.rows(table)] == [f"task:{task.id}:1"]  # the created one only


def test_task_changes_are_mirrored_while_the_playbook_is_paused(make: Any, db_url: str, crm: Receiver) -> None:
    """A pause holds what the playbook sends customers, not what a person did to a task."""
    p = project(make, db_url, crm)
    p.run(T0)
    (task,) = p.rows(tasks)
    work.change(p.engine, [task.id], "snooze", note=None, user="maria", now=T0, settings=p.config.tasks,
                until=T0 + timedelta(days=1))
    report = webhooks.post_due(p.engine, timedelta(days=1), clock=lambda: T0, allow_private=True,
                               hold=lambda conn: ["call"])
    assert report.sent == 1 and crm.requests[-1][1]["event"] == "snoozed"
    assert crm.requests[-1][1]["snoozed_until"] == (T0 + timedelta(days=1)).isoformat()


def test_the_crm_gets_the_configured_headers_and_a_signature(make: Any, db_url: str, crm: Receiver) -> None:
    secret = "crm-signing-secret-0123"
    p = make({"call": CALL}, database=db_url, webhooks={"allow_private": True}, tasks={"webhook": {
        "url": crm.url, "headers": {"Authorization": "Bearer crm-token"}, "secret": secret}})
    p.run(T0)
    (headers, _), = crm.requests
    assert headers["Authorization"] == "Bearer crm-token"
    t, v1 = (part.split("=", 1)[1] for part in headers["Playbookd-Signature"].split(","))
    assert hmac.compare_digest(v1, hmac.new(secret.encode(), f"{t}.".encode() + crm.raw[0], hashlib.sha256).hexdigest())
