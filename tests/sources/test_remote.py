"""sql and http sources against a real database and a real HTTP server on loopback, synced end to end."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from playbookd.config.settings import Source, load_config
from playbookd.sources.base import SourceError
from playbookd.sources.registry import read_rows, source_columns
from playbookd.store.accounts import get_account, load_account_types
from playbookd.sync.run import sync

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
TOKEN = "Bearer s3cret"
PEOPLE = [{"id": f"A{i}", "name": f"Account {i}", "arr": 1000 * i, "renewal_date": "2027-01-0" + str(i % 9 + 1)}
          for i in range(1, 8)]


def usage_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    with create_engine(url).begin() as conn:
        conn.execute(text("create table usage (account text, active_users integer, last_seen timestamp,"
                          " spend numeric(10, 2))"))
        conn.execute(text("insert into usage values ('A1', 12, '2026-11-20 10:00:00', 99.50),"
                          " ('A2', 3, '2026-10-01 08:30:00', 10)"))
    return url


def sql_source(url: str, query: str = "select account, active_users, last_seen, spend from usage") -> Source:
    return Source.model_validate({"name": "usage", "kind": "sql", "entity": "accounts", "url": url,
                                  "query": query, "fields": {"id": "account"}})


def test_sql_rows_are_streamed_with_renames_and_iso_values(tmp_path: Path) -> None:
    source = sql_source(usage_db(tmp_path))
    assert source_columns(source) == ["id", "active_users", "last_seen", "spend"]
    rows = list(read_rows(source))
    assert [r.line for r in rows] == [1, 2]
    assert rows[0].values["id"] == "A1" and rows[0].values["active_users"] == 12
    assert rows[0].values["last_seen"].startswith("2026-11-20")


def test_sql_query_error_names_the_source(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="source usage: query failed: no such table: nope"):
        list(read_rows(sql_source(usage_db(tmp_path), "select * from nope")))


class Api(ThreadingHTTPServer):
    def __init__(self, pages: list[Any], style: str) -> None:
        super().__init__(("127.0.0.1", 0), ApiHandler)
        self.pages, self.style, self.requests = pages, style, 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/accounts"


class ApiHandler(BaseHTTPRequestHandler):
    server: Api

    def do_GET(self) -> None:
        self.server.requests += 1
        if self.headers.get("Authorization") != TOKEN:
            self.send_response(401)
            self.end_headers()
            return
        page = int(self.path.partition("page=")[2] or 1)
        has_next = page < len(self.server.pages)
        next_url = f"/accounts?page={page + 1}"
        body: Any = self.server.pages[page - 1]
        self.send_response(200)
        if self.server.style == "link" and has_next:
            self.send_header("Link", f'<{self.server.url}?page={page + 1}>; rel="next"')
        elif self.server.style == "body":
            body = {"data": body, "links": {"next": next_url if has_next else None}}
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(params=["link", "body"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    server = Api([PEOPLE[:3], PEOPLE[3:6], PEOPLE[6:]], request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def http_source(url: str, headers: dict[str, str] | None = None) -> Source:
    return Source.model_validate({"name": "crm", "kind": "http", "entity": "accounts", "url": url,
                                  "headers": {"Authorization": TOKEN} if headers is None else headers})


def test_http_follows_every_page(api: Api) -> None:
    rows = list(read_rows(http_source(api.url)))
    assert [r.values["id"] for r in rows] == [p["id"] for p in PEOPLE]
    assert [r.line for r in rows] == list(range(1, 8))
    assert api.requests == 3


def test_http_without_auth_is_a_clear_error(api: Api) -> None:
    with pytest.raises(SourceError, match=r"source crm: GET .*: HTTP 401"):
        list(read_rows(http_source(api.url, headers={})))


def test_config_expands_the_auth_header_from_the_environment(tmp_path: Path, api: Api,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TOKEN", "s3cret")
    (tmp_path / "config.yaml").write_text(
        "company: {postal_address: '1 Main St'}\n"
        f"sources:\n  - {{name: crm, kind: http, entity: accounts, url: '{api.url}',"
        " headers: {Authorization: 'Bearer ${CRM_TOKEN}'}}\n")
    config = load_config(tmp_path / "config.yaml")
    assert len(list(read_rows(config.sources[0]))) == 7


def test_http_source_syncs_into_the_store(engine: Engine, tmp_path: Path, api: Api) -> None:
    from playbookd.config.settings import Config

    config = Config.model_validate({"company": {"postal_address": "1 Main St"},
                                    "sources": [http_source(api.url).model_dump()]})
    report = sync(engine, config, now=NOW)
    assert report.ok and report.sources[0].inserted == 7
    with engine.connect() as conn:
        record = get_account(conn, "A3", load_account_types(conn))
    assert record is not None and record["arr"] == 3000


def test_missing_settings_are_refused_at_load() -> None:
    with pytest.raises(ValueError, match="kind sql needs url and query"):
        Source.model_validate({"name": "usage", "kind": "sql", "entity": "accounts"})
    with pytest.raises(ValueError, match="kind http needs url"):
        Source.model_validate({"name": "crm", "kind": "http", "entity": "accounts"})


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_credentials_never_follow_a_next_link_to_another_origin() -> None:
    seen: list[str | None] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self._reply([{"id": "X9"}], None)

        def _reply(self, body: Any, link: str | None) -> None:
            self.send_response(200)
            if link:
                self.send_header("Link", f'<{link}>; rel="next"')
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args: Any) -> None:
            pass

    other = _serve(Elsewhere)

    class First(Elsewhere):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self._reply([{"id": "A1"}], f"http://127.0.0.1:{other.server_address[1]}/collect")

    first = _serve(First)
    try:
        rows = list(read_rows(http_source(f"http://127.0.0.1:{first.server_address[1]}/accounts")))
        assert [r.values["id"] for r in rows] == ["A1", "X9"]
        assert seen == [TOKEN, None]  # the token went to the configured origin only
    finally:
        for server in (first, other):
            server.shutdown()
            server.server_close()
