"""`console.auth: proxy` over real HTTP on loopback: the user comes from a trusted proxy's headers,
believed only from `console.trusted_proxies`; roles and CSRF hold as with a password login."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import edit_config
from console_helpers import Client, Reply, copy_project, loaded, make_project, text_of
from http_helpers import serving
from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.console.app import Console
from playbookd.console.views import mount
from playbookd.service import http
from playbookd.store.schema import audit

SECRET = b"console-proxy-secret"
PLAYBOOK = "/console/playbooks/no-login-7d"


class ProxiedClient(Client):
    """What a reverse proxy forwards after it authenticated the person: their name and role."""

    def __init__(self, base: str, user: str | None, role: str | None = None) -> None:
        super().__init__(base)
        self.proxy = {k: v for k, v in (("X-Remote-User", user), ("X-Remote-Role", role)) if v is not None}

    def send(self, path: str, form: dict[str, str] | list[tuple[str, str]] | None = None,
             headers: dict[str, str] | None = None) -> Reply:
        return super().send(path, form, {**self.proxy, **(headers or {})})


@pytest.fixture(scope="module")
def template_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("console-proxy"))


def served(template: Path, target: Path, **console: object) -> Iterator[tuple[str, Engine]]:
    project = copy_project(template, target)
    edit_config(project, console={"enabled": True, "auth": "proxy", **console})
    rt, engine = loaded(project)
    assert isinstance(engine, Engine)
    site = http.Site(engine, SECRET, "Acme", lambda: http.health(engine),
                     console=mount(Console(engine, lambda: rt, SECRET)))
    with serving(site) as url:
        yield url, engine


@pytest.fixture
def trusted(template_project: Path, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    yield from served(template_project, tmp_path / "project")


@pytest.fixture
def untrusted(template_project: Path, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    yield from served(template_project, tmp_path / "project", trusted_proxies=["10.0.0.0/8"])


def test_the_proxy_user_sees_pages_without_a_login(trusted: tuple[str, Engine]) -> None:
    url, _ = trusted
    reply = ProxiedClient(url, "ana@acme.example").get("/console/playbooks")
    assert reply.status == 200 and "Playbooks" in text_of(reply.body)
    assert "ana@acme.example" in text_of(reply.body)


def test_without_the_user_header_there_is_no_session(trusted: tuple[str, Engine]) -> None:
    url, _ = trusted
    reply = ProxiedClient(url, None).get("/console/playbooks")
    assert reply.status in (303, 401, 403) and "Playbooks" not in reply.body


def test_headers_from_an_untrusted_address_are_refused(untrusted: tuple[str, Engine]) -> None:
    url, _ = untrusted  # loopback is not in trusted_proxies here: anyone could have sent the headers
    reply = ProxiedClient(url, "ana@acme.example", "operator").get("/console/playbooks")
    assert reply.status == 403 and "trusted proxy" in reply.body


def test_the_role_header_decides_who_may_act_and_actions_are_audited(trusted: tuple[str, Engine]) -> None:
    url, engine = trusted
    viewer = ProxiedClient(url, "vic@acme.example")  # no role header: viewer
    assert viewer.post(PLAYBOOK, [("action", "pause")], PLAYBOOK).status == 403
    operator = ProxiedClient(url, "olga@acme.example", "operator")
    assert operator.send(PLAYBOOK, [("action", "pause")], {"Origin": url}).status == 403  # no CSRF token
    assert operator.post(PLAYBOOK, [("action", "pause")], PLAYBOOK).status == 303
    with engine.connect() as conn:
        [action] = conn.execute(select(audit).where(audit.c.event == "console_action")).all()
    assert action.detail["user"] == "olga@acme.example" and action.reason == "pause"


def test_a_token_of_one_proxy_user_does_not_serve_another(trusted: tuple[str, Engine]) -> None:
    url, _ = trusted
    token = ProxiedClient(url, "olga@acme.example", "operator").token(PLAYBOOK)
    mallory = ProxiedClient(url, "mallory@acme.example", "operator")
    assert mallory.send(PLAYBOOK, [("csrf", token), ("action", "pause")], {"Origin": url}).status == 403
