"""The HTTP endpoints over real HTTP on loopback: one-click unsubscribe, events, health and metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from http_helpers import post_events, post_raw_events, raw_request, request, serving
from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.delivery.unsubscribe import sign
from playbookd.service import http
from playbookd.store.schema import audit, suppressions

SECRET = b"s3cret"


@pytest.fixture
def site(engine: Engine) -> Iterator[str]:
    with serving(http.Site(engine, SECRET, "Acme", lambda: http.health(engine))) as url:
        yield url


def suppressed(engine: Engine) -> list[tuple[str, str, str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(suppressions.c.email, suppressions.c.category,
                                                      suppressions.c.reason, suppressions.c.note))]


def test_get_only_asks_and_changes_nothing(site: str, engine: Engine) -> None:
    status, page = request(f"{site}/unsubscribe/{sign(SECRET, 'ana@customer.example', 'product_tips')}")
    assert status == 200
    assert "product tips emails" in page and "a**@customer.example" in page and "<form" in page
    assert suppressed(engine) == []


def test_one_click_post_unsubscribes_that_category_once(site: str, engine: Engine) -> None:
    url = f"{site}/unsubscribe/{sign(SECRET, 'Ana@Customer.example', 'product_tips')}"
    for _ in range(2):
        status, page = request(url, b"List-Unsubscribe=One-Click")
        assert status == 200 and "unsubscribed" in page
    assert suppressed(engine) == [("ana@customer.example", "product_tips", "unsubscribed", "one_click")]
    with engine.connect() as conn:
        assert [r.event for r in conn.execute(select(audit))] == ["unsubscribed"]


def test_the_page_button_unsubscribes_too(site: str, engine: Engine) -> None:
    status, _ = request(f"{site}/unsubscribe/{sign(SECRET, 'bo@customer.example', '*')}", b"confirm=1")
    assert status == 200
    assert suppressed(engine) == [("bo@customer.example", "*", "unsubscribed", "link")]


@pytest.mark.parametrize("token", [
    sign(b"other-secret", "ana@customer.example", "product_tips"),         # forged
    sign(SECRET, "ana@customer.example", "product_tips")[:-2] + "AA",      # altered MAC
    "eyJ4Ijp9.AAAA",                                                        # garbage
    "",
])
def test_forged_or_altered_tokens_are_refused_alike(site: str, engine: Engine, token: str) -> None:
    get_status, get_page = request(f"{site}/unsubscribe/{token}")
    post_status, post_page = request(f"{site}/unsubscribe/{token}", b"List-Unsubscribe=One-Click")
    assert get_status == post_status == 404
    assert "customer.example" not in get_page + post_page
    assert suppressed(engine) == []


def test_payload_cannot_be_swapped_under_a_valid_mac(site: str, engine: Engine) -> None:
    good = sign(SECRET, "ana@customer.example", "product_tips")
    other = sign(SECRET, "ana@customer.example", "*")
    spliced = other.split(".")[0] + "." + good.split(".")[1]
    assert request(f"{site}/unsubscribe/{spliced}", b"List-Unsubscribe=One-Click")[0] == 404
    assert suppressed(engine) == []


def test_oversized_body_is_refused(site: str, engine: Engine) -> None:
    url = f"{site}/unsubscribe/{sign(SECRET, 'ana@customer.example', 'x')}"
    assert request(url, b"a" * (http.MAX_BODY + 1))[0] == 413
    assert suppressed(engine) == []


def test_health_reports_database_and_age_of_last_cycle(site: str, engine: Engine) -> None:
    status, body = request(f"{site}/healthz")
    assert status == 200 and json.loads(body)["last_cycle_age_seconds"] is None
    from datetime import timedelta

    from playbookd.store import state
    from playbookd.store.database import utcnow

    state.put(engine, "last_cycle", {"at": (utcnow() - timedelta(minutes=5)).isoformat()})
    report = json.loads(request(f"{site}/healthz")[1])
    assert report["database"] == "reachable" and 299 <= report["last_cycle_age_seconds"] <= 330


def test_mask_keeps_domain_hides_local_part() -> None:
    assert http.mask("ana@customer.example") == "a**@customer.example"
    assert http.mask("x@y.example") == "x**@y.example"


def test_metrics_report_store_counts_and_process_histograms(site: str, engine: Engine) -> None:
    from playbookd.service import metrics

    metrics.CYCLE_SECONDS.labels("evaluate").observe(1.5)
    request(f"{site}/unsubscribe/{sign(SECRET, 'ana@customer.example', 'x')}", b"List-Unsubscribe=One-Click")
    status, text = request(f"{site}/metrics")
    assert status == 200
    assert "playbookd_suppressed 1.0" in text
    assert 'playbookd_cycle_seconds_count{stage="evaluate"}' in text
    assert "# TYPE playbookd_send_seconds histogram" in text


@pytest.fixture
def events_site(engine: Engine) -> Iterator[tuple[str, list[int]]]:
    from playbookd.store.database import utcnow
    from playbookd.store.schema import accounts

    with engine.begin() as conn:
        conn.execute(accounts.insert(), [{"id": i, "segment": "s", "data": {}, "changes": {}, "synced_at": utcnow(),
                                          "created_at": utcnow()} for i in ("A", "ACC-1", "ACC-2")])
    nudges: list[int] = []
    with serving(http.Site(engine, SECRET, "Acme", lambda: http.health(engine), "tok3n",
                           lambda: nudges.append(1))) as url:
        yield url, nudges


def stored_events(engine: Engine) -> list[tuple[str, str, object]]:
    from playbookd.store.schema import events

    with engine.connect() as conn:
        return [(r.account_id, r.name, r.data) for r in conn.execute(select(events).order_by(events.c.id))]


def test_post_events_stores_them_once_and_nudges(events_site: tuple[str, list[int]], engine: Engine) -> None:
    url, nudges = events_site
    batch = [{"account": "ACC-1", "name": "nps_response", "data": {"score": 3}, "id": "typeform-981"},
             {"account": "ACC-2", "name": "nps_response", "data": {"score": 10}}]
    assert post_events(url, batch) == (202, {"accepted": 2, "duplicates": 0})
    assert post_events(url, batch[0]) == (202, {"accepted": 0, "duplicates": 1})  # a retried request
    assert stored_events(engine) == [("ACC-1", "nps_response", {"score": 3}), ("ACC-2", "nps_response", {"score": 10})]
    assert nudges == [1, 1]


@pytest.mark.parametrize(("body", "message"), [
    ([{"account": "A", "name": "x"}, {"name": "x"}], "event 2: `account` must be a non-empty string"),
    ({"account": "A", "name": "x", "data": [1]}, "event 1: `data` must be an object"),
    ({"account": "A", "name": "x", "score": 3}, "event 1: unknown field(s) score"),
    ({"account": "A", "name": "x", "occurred_at": "yesterday"}, "event 1: `occurred_at` 'yesterday' is not"),
    ([{"account": "A", "name": "x"}, {"account": "ACC-404", "name": "x"}], "event 2: unknown account 'ACC-404'"),
])
def test_bad_events_are_refused_whole_with_the_reason(events_site: tuple[str, list[int]], engine: Engine,
                                                      body: object, message: str) -> None:
    status, answer = post_events(events_site[0], body)
    assert status == 400 and str(answer["error"]).startswith(message)
    assert stored_events(engine) == []


def test_events_need_the_bearer_token(events_site: tuple[str, list[int]], engine: Engine) -> None:
    body = {"account": "A", "name": "x"}
    assert post_events(events_site[0], body, token=None)[0] == 401
    assert post_events(events_site[0], body, token="guess")[0] == 401
    assert stored_events(engine) == []


def test_events_endpoint_is_off_without_a_token(site: str, engine: Engine) -> None:
    assert post_events(site, {"account": "A", "name": "x"})[0] == 404
    assert stored_events(engine) == []


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", " +5"])
def test_a_content_length_that_is_not_a_plain_number_is_refused(events_site: tuple[str, list[int]],
                                                                engine: Engine, length: str) -> None:
    url, _ = events_site
    head = (f"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok3n\r\nContent-Length: {length}\r\n"
            "Connection: close")
    status, _ = raw_request(url, head, b'{"account": "A", "name": "x"}')
    assert status == 400 and stored_events(engine) == []


def test_the_unsubscribe_body_cap_holds_against_a_negative_length(site: str, engine: Engine) -> None:
    path = f"/unsubscribe/{sign(SECRET, 'ana@customer.example', 'x')}"
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close"
    assert raw_request(site, head, b"List-Unsubscribe=One-Click")[0] == 400
    assert suppressed(engine) == []


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000,
                                  b'{"account": "A", "name": "nps", "data": {"score": NaN}}'])
def test_json_too_deep_or_not_storable_is_a_400_not_a_traceback(events_site: tuple[str, list[int]],
                                                                engine: Engine, body: bytes) -> None:
    url, _ = events_site
    head = (f"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok3n\r\nContent-Length: {len(body)}\r\n"
            "Connection: close")
    status, reply = raw_request(url, head, body)
    assert status == 400 and b"not acceptable JSON" in reply and stored_events(engine) == []


def test_json_nested_past_the_depth_limit_is_refused_naming_it(events_site: tuple[str, list[int]],
                                                               engine: Engine) -> None:
    def nested(levels: int) -> object:
        data: object = 1
        for _ in range(levels):
            data = {"x": data}
        return data

    # the event object is one level, its data the rest: the limit counts the whole document
    accepted = {"account": "A", "name": "deep", "data": nested(http.MAX_JSON_DEPTH - 1)}
    refused = {"account": "A", "name": "deeper", "data": nested(http.MAX_JSON_DEPTH)}
    assert post_events(events_site[0], accepted)[0] == 202
    status, answer = post_events(events_site[0], refused)
    assert status == 400 and f"nested deeper than {http.MAX_JSON_DEPTH} levels" in str(answer["error"])
    assert [name for _, name, _ in stored_events(engine)] == ["deep"]


def test_an_event_id_reused_for_another_account_is_a_conflict(events_site: tuple[str, list[int]],
                                                              engine: Engine) -> None:
    url, nudges = events_site
    first = {"account": "ACC-1", "name": "nps_response", "data": {"score": 3}, "id": "typeform-981"}
    assert post_events(url, first) == (202, {"accepted": 1, "duplicates": 0})
    assert post_events(url, first) == (202, {"accepted": 0, "duplicates": 1})  # the same event again: a retry
    status, answer = post_events(url, {**first, "account": "ACC-2"})
    assert status == 409
    assert answer["error"] == ("event 1: id 'typeform-981' is already used by an event of another account; "
                               "an id must name one event")
    # within one batch too, and nothing of the batch is kept
    batch = [{"account": "ACC-1", "name": "x", "id": "zap-1"}, {"account": "ACC-2", "name": "x", "id": "zap-1"}]
    assert post_events(url, batch)[0] == 409
    assert stored_events(engine) == [("ACC-1", "nps_response", {"score": 3})]
    assert nudges == [1, 1]


@pytest.mark.parametrize(("body", "message"), [
    (b'{"account": "A", "name": "nps", "data": {"score": 1e400}}',
     "event 1: `data.score` is Infinity, which is not a number JSON or a database can store"),
    (b'[{"account": "A", "name": "nps"}, {"account": "A", "name": "nps", "data": {"s": [1, -1e999]}}]',
     "event 2: `data.s[1]` is -Infinity"),
    (b'{"account": "A", "name": "nps", "data": {"comment": "a\\u0000b"}}',
     "event 1: `data.comment` contains a NUL character (\\u0000), which PostgreSQL cannot store"),
    (b'{"account": "A", "name": "nps", "data": {"k\\u0000": 1}}', "event 1: `data` has a key that contains a NUL"),
    (b'{"account": "A", "name": "nps\\u0000"}', "event 1: `name` contains a NUL character"),
    (b'{"account": "A", "name": "nps", "id": "\\ud800"}', "event 1: `id` contains an unpaired surrogate"),
    (b'{"account": "A", "name": "nps", "data": {"c": ["\\udc80"]}}', "event 1: `data.c[0]` contains an unpaired"),
    (b'{"account": "A", "name": "nps", "data": {"score": NaN}}', "not acceptable JSON: NaN is not a number"),
], ids=["1e400", "-1e999 in a list", "NUL in data", "NUL in a key", "NUL in name", "surrogate in id",
        "surrogate in data", "NaN"])
def test_values_the_database_cannot_store_are_a_permanent_400(events_site: tuple[str, list[int]], engine: Engine,
                                                              body: bytes, message: str) -> None:
    # on PostgreSQL these were a 503 "retry" (or stored, to fail later): a sender would retry forever
    status, answer = post_raw_events(events_site[0], body)
    assert status == 400 and str(answer["error"]).startswith(message)
    assert stored_events(engine) == []
