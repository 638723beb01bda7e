"""Email steps with header values from data: one line, capped at limits.header_chars, and the cut
recorded; on a SQLite file and on PostgreSQL, through full cycles to the file transport."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email import message_from_bytes, policy
from typing import Any

import pytest
from cycle_helpers import CONTACTS

from playbookd.cli.output import status_data
from playbookd.store.schema import audit, outbox

T0 = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
HELLO = "id: hello\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: login_nudge, to: admin}\n"
NAME = "Harbor\u2028Foods\x1cInternational\x85Holdings " + "Group " * 50  # ~330 characters, line breaks of 3 kinds


def accounts(name: str) -> str:
    return ("id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n"
            f"ACC-1,\"{name}\",5000,active,basic,adopted,maria@acme.example\n")


def test_a_long_name_with_line_breaks_is_sent_on_one_capped_line_and_the_cut_recorded(
        make: Any, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    project = make({"hello": HELLO}, accounts_csv=accounts(NAME), contacts_csv=CONTACTS, database=db_url,
                   limits={"header_chars": 60})
    with caplog.at_level(logging.WARNING, logger="playbookd.cadence"):
        project.run(T0)
    (row,) = project.rows(outbox)
    assert row.state == "sent"
    assert row.subject.startswith("Harbor Foods International Holdings Group") and len(row.subject) == 60
    (written,) = (project.path / "outbox").glob("*.eml")
    assert message_from_bytes(written.read_bytes(), policy=policy.default)["Subject"] == row.subject
    (cut,) = project.rows(audit, audit.c.event == "header_cut")
    assert (cut.account_id, cut.contact, cut.reason) == ("ACC-1", "ana@harbor.example", "limits.header_chars")
    assert cut.detail == {"headers": ["subject"], "limit": 60}
    assert any("subject of the email to ana@harbor.example cut at limits.header_chars (60 characters)"
               in r.getMessage() for r in caplog.records)
    cuts = status_data(project.engine)["header_cuts"]
    assert cuts["count"] == 1 and cuts["last_account"] == "ACC-1"


def test_a_name_that_fits_is_neither_cut_nor_recorded(make: Any, db_url: str) -> None:
    project = make({"hello": HELLO}, accounts_csv=accounts("Harbor Foods"), contacts_csv=CONTACTS, database=db_url)
    project.run(T0)
    (row,) = project.rows(outbox)
    assert (row.state, row.subject) == ("sent", "Harbor Foods: a quick way back into your dashboard")
    assert project.rows(audit, audit.c.event == "header_cut") == []
    assert status_data(project.engine)["header_cuts"] is None
