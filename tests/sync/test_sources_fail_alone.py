"""A source is read whole before anything from it is applied, against real SQLite and PostgreSQL:
bad bytes and huge values are problems of their rows, a file changed mid-read or a query or API
that fails mid-read applies nothing, and each source's state says whether it could be read."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from smtp_server import free_port
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine

from playbookd.config.settings import Config
from playbookd.sources import textfile
from playbookd.store.schema import accounts
from playbookd.sync import health
from playbookd.sync.run import SyncReport, sync

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def config(*sources: dict[str, Any], **limits: Any) -> Config:
    return Config.model_validate({"company": {"postal_address": "1 Main St"}, "sources": list(sources),
                                  "limits": limits})


def csv_source(path: Path, name: str = "crm") -> dict[str, Any]:
    return {"name": name, "kind": "csv", "entity": "accounts", "path": str(path)}


def stored_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(accounts.c.id)).scalars())


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(accounts)).scalar_one())


def problems(report: SyncReport) -> list[str]:
    return [str(p) for s in report.sources for p in s.problems]


def accounts_csv(path: Path, rows: int, broken: dict[int, bytes] | None = None) -> Path:
    """A header and `rows` accounts A2..; `broken` replaces the given lines (1-based, header is 1)."""
    lines = [f"A{n},Account {n},{n * 10}".encode() for n in range(2, rows + 2)]
    for number, content in (broken or {}).items():
        lines[number - 2] = content
    path.write_bytes(b"id,name,arr\n" + b"\n".join(lines) + b"\n")
    return path


def test_a_bad_byte_on_line_1501_is_reported_there_and_every_good_row_is_applied(engine: Engine,
                                                                                 tmp_path: Path) -> None:
    path = accounts_csv(tmp_path / "a.csv", 3000, {1501: b"A1501,Caf\xe9 Ltd,10"})
    report = sync(engine, config(csv_source(path)), now=NOW)
    assert problems(report) == [f"{path}:1501: not valid UTF-8: byte 0xe9 at column 10"]
    assert count(engine) == 2999
    assert "A1501" not in stored_ids(engine)


def test_a_ten_megabyte_field_is_a_problem_of_its_row_not_of_the_file(engine: Engine, tmp_path: Path) -> None:
    path = accounts_csv(tmp_path / "a.csv", 3000, {1200: b"A1200,Big," + b"9" * 10_000_000,
                                                    1300: b"A1300," + "é".encode() * 200 + b",1"})
    report = sync(engine, config(csv_source(path), max_field_bytes=256), now=NOW)
    assert problems(report) == [
        f"{path}:1200: row longer than 1547 characters, so a value in it is over limits.max_field_bytes (256); "
        "not read",
        f"{path}:1300: account A1300: name: 400 bytes, over limits.max_field_bytes (256)"]
    assert count(engine) == 2998


def test_a_file_truncated_while_read_applies_nothing_and_is_read_whole_next_time(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = accounts_csv(tmp_path / "a.csv", 3000)
    whole = path.read_bytes()

    def truncate_at_line_2500(read: Path, line: int) -> None:
        if read == path and line == 2500:
            os.truncate(path, len(whole) - 1000 - 7)  # mid-row: its torn rest must not be stored

    monkeypatch.setattr(textfile, "line_hook", truncate_at_line_2500)
    cfg = config(csv_source(path), {"name": "other", "kind": "csv", "entity": "accounts",
                                    "path": str(accounts_csv(tmp_path / "b.csv", 1))})
    report = sync(engine, cfg, now=NOW)
    crm, other = report.sources
    assert crm.read >= 2499 and (crm.inserted, crm.updated, other.inserted) == (0, 0, 1)
    assert crm.unreachable and crm.failure == (
        f"{path}: changed while being read (size {len(whole)} -> {len(whole) - 1007} bytes); it is read again "
        f"at the next sync (after {crm.read} row(s); nothing from this source was applied)")
    assert stored_ids(engine) == ["A2"]  # from the other source only
    state = health.states(engine)["crm"]
    assert (state["ok"], state["attempts"], state["last_success"], state["last_error"]) == (
        False, 1, None, crm.failure)
    monkeypatch.setattr(textfile, "line_hook", None)
    path.write_bytes(whole)
    again = sync(engine, cfg, now=LATER)
    assert again.ok and (again.sources[0].inserted, count(engine)) == (2999, 3000)  # A2 came from the other
    state = health.states(engine)["crm"]
    assert (state["ok"], state["attempts"], state["last_success"]) == (True, 0, LATER.isoformat())
    assert state["last_error"] == crm.failure and state["last_error_at"] == NOW.isoformat()


@pytest.fixture
def usage_db(pg_url: str) -> str:
    """A PostgreSQL schema with 3000 usage rows, the source side of a sql source."""
    source = create_engine(pg_url)
    with source.begin() as conn:
        conn.execute(text("CREATE TABLE usage AS SELECT n, 'A' || n AS account, n % 50 AS seats "
                          "FROM generate_series(1, 3000) AS n"))
    source.dispose()
    return pg_url


def sql_source(url: str, query: str) -> dict[str, Any]:
    return {"name": "usage", "kind": "sql", "entity": "accounts", "url": url, "query": query}


def test_a_query_that_fails_mid_read_applies_nothing(engine: Engine, usage_db: str) -> None:
    # the server streams rows in batches: the division by zero at row 2500 comes after many were read
    query = "SELECT account AS id, seats, 1 / (2500 - n) AS x FROM usage"
    report = sync(engine, config(sql_source(usage_db, query)), now=NOW)
    (usage,) = report.sources
    assert 1000 < usage.read < 2500 and not usage.unreachable
    assert usage.failure == (f"source usage: query failed while reading: division by zero (after {usage.read} "
                             "row(s); nothing from this source was applied)")
    assert count(engine) == 0


def test_sql_row_problems_name_the_row_and_the_account(engine: Engine, usage_db: str) -> None:
    query = ("SELECT account AS id, CASE WHEN n = 7 THEN 'many' ELSE seats::text END AS seats, "
             "CASE WHEN n = 9 THEN repeat('x', 300) END AS note FROM usage WHERE n <= 10 ORDER BY n")
    cfg = config({**sql_source(usage_db, query), "types": {"seats": "integer"}}, max_field_bytes=256)
    report = sync(engine, cfg, now=NOW)
    assert problems(report) == [
        "source usage: row 7: account A7: seats: expected an integer, got 'many'",
        "source usage: row 9: account A9: note: 300 bytes, over limits.max_field_bytes (256)"]
    assert count(engine) == 8


def test_a_database_that_cannot_be_reached_counts_attempts_until_it_can(engine: Engine, usage_db: str) -> None:
    down = usage_db.replace("127.0.0.1:5432", f"127.0.0.1:{free_port()}")
    query = "SELECT account AS id, seats FROM usage"
    for attempt, at in enumerate((NOW, LATER), start=1):
        report = sync(engine, config(sql_source(down, query)), now=at, retry_in=lambda s, n: timedelta(minutes=n))
        assert report.unreachable == ["usage"]
        state = health.states(engine)["usage"]
        assert (state["ok"], state["attempts"], state["last_success"]) == (False, attempt, None)
        assert state["next_retry"] == (at + timedelta(minutes=attempt)).isoformat()
        assert "Connection refused" in state["last_error"] and "\n" not in state["last_error"]
    report = sync(engine, config(sql_source(usage_db, query)), now=LATER + timedelta(hours=1))
    assert report.ok and report.sources[0].inserted == 3000
    assert health.failing(health.states(engine)) == {}


class Api(ThreadingHTTPServer):
    """Pages of accounts; a page given as a number answers with that HTTP status."""

    def __init__(self, pages: list[Any]) -> None:
        super().__init__(("127.0.0.1", 0), ApiHandler)
        self.pages = pages
        self.url = f"http://127.0.0.1:{self.server_address[1]}/accounts"


class ApiHandler(BaseHTTPRequestHandler):
    server: Api

    def do_GET(self) -> None:
        page = int(self.path.partition("page=")[2] or 1)
        content = self.server.pages[page - 1]
        if isinstance(content, int):
            self.send_error(content)
            return
        more = page < len(self.server.pages)
        body = json.dumps({"data": content, "next": f"/accounts?page={page + 1}" if more else None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[Api]:
    page = [{"id": f"A{n}", "arr": n} for n in range(1, 1501)]
    server = Api([page, [{**r, "id": f"B{r['id']}"} for r in page], 503])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_an_api_page_that_fails_applies_nothing_from_the_pages_before(engine: Engine, api: Api) -> None:
    source = {"name": "billing", "kind": "http", "entity": "accounts", "url": api.url}
    report = sync(engine, config(source), now=NOW)
    (billing,) = report.sources
    assert billing.unreachable and billing.failure is not None
    assert f"GET {api.url}?page=3: HTTP 503" in billing.failure
    assert billing.failure.endswith("(page 3) (after 3000 row(s); nothing from this source was applied)")
    assert count(engine) == 0
    api.pages[2] = [{"id": "C1", "name": "x" * 300}]
    report = sync(engine, config(source, max_field_bytes=256), now=LATER)
    assert problems(report) == [
        "source billing: row 3001: account C1: name: 300 bytes, over limits.max_field_bytes (256)"]
    assert count(engine) == 3000
