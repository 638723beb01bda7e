"""`run --once` when delivery fails with an error that is not a sending process's, on a SQLite file
and on PostgreSQL (where it fails on the thread beside advance), against a real SMTP server: the
evaluation is recorded all the same. And delivery beside work that raises its own error: the
delivery's error is logged, not lost."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from smtp_server import SmtpServer
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from playbookd.delivery.outbox import DeliveryReport
from playbookd.service.beside import Beside
from playbookd.store.database import transaction
from playbookd.store.state import get

AT = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
HELLO = "id: hello\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: login_nudge, to: admin}\n"
REFUSED = "claim refused by the test"


def refuse_claims(engine: Engine) -> None:
    """From now on, marking any outbox row `claimed` fails inside the claiming statement."""
    with transaction(engine) as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"CREATE TRIGGER refuse_claim BEFORE UPDATE OF state ON outbox "
                                 f"WHEN NEW.state = 'claimed' BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END")
            return
        conn.exec_driver_sql(f"CREATE FUNCTION refuse_claim() RETURNS trigger LANGUAGE plpgsql AS "
                             f"$$ BEGIN RAISE EXCEPTION '{REFUSED}'; END $$")
        conn.exec_driver_sql("CREATE TRIGGER refuse_claim BEFORE UPDATE ON outbox FOR EACH ROW "
                             "WHEN (NEW.state = 'claimed') EXECUTE FUNCTION refuse_claim()")


def test_the_evaluation_is_recorded_when_delivery_fails(make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    smtp = {"host": "127.0.0.1", "port": smtp_server.port, "timeout": 5}
    p = make({"hello": HELLO}, database=db_url, delivery={"transport": "smtp", "smtp": smtp, "quiet_hours": None,
                                                          "frequency_cap": None})
    refuse_claims(p.engine)
    with pytest.raises(DBAPIError, match=REFUSED):
        p.run(AT)
    assert get(p.engine, "last_evaluation") == {"at": AT.isoformat(), "enrolled": 1, "advanced": 1}
    assert not smtp_server.received


def test_a_delivery_error_beside_a_block_that_raises_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def deliver(stop: threading.Event) -> DeliveryReport:
        raise RuntimeError("the outbox could not be read: disk I/O error at page 7")

    with (caplog.at_level(logging.ERROR, logger="playbookd.cycle"), pytest.raises(ValueError, match="advance broke"),
          Beside(deliver) as beside):
        beside.thread.join(timeout=30)  # the delivery has failed before the block does
        assert beside.failure is not None
        raise ValueError("advance broke")
    logged = [r for r in caplog.records if r.name == "playbookd.cycle" and r.levelno == logging.ERROR]
    assert len(logged) == 1
    assert "the outbox could not be read: disk I/O error at page 7" in logged[0].getMessage()
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is RuntimeError  # with its traceback
