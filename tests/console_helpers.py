"""A console over real HTTP on loopback, on a project made by `playbookd init` and one `run --once`,
and a client that keeps cookies and fills in the forms' CSRF tokens as a browser would."""

from __future__ import annotations

import http.cookiejar
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cli_helpers import edit_config, playbookd

from playbookd import runtime
from playbookd.config.settings import load_config
from playbookd.console.users import add_user
from playbookd.store.database import connect

OPERATOR, VIEWER = ("olga", "operator-pass-1"), ("vic", "viewer-pass-1")


def make_project(root: Path, accounts: int = 60, **config: object) -> Path:
    """A project with sample data after one full cycle (emails, tasks, audit), the console on, two users."""
    assert playbookd("init", "project", "--accounts", str(accounts), cwd=root).returncode == 0
    project = root / "project"
    edit_config(project, console={"enabled": True, **config}, delivery={"quiet_hours": None, "frequency_cap": None})
    done = playbookd("run", "--once", cwd=project)
    assert done.returncode == 0, done.stderr
    users = load_config(project / "config.yaml").console.users_file
    add_user(users, OPERATOR[0], "operator", OPERATOR[1])
    add_user(users, VIEWER[0], "viewer", VIEWER[1])
    return project


def copy_project(template: Path, target: Path) -> Path:
    shutil.copytree(template, target)
    return target


def loaded(project: Path) -> tuple[runtime.Runtime, object]:
    config = load_config(project / "config.yaml")
    engine = connect(config.database)
    return runtime.load(config=config, engine=engine), engine


@dataclass
class Reply:
    status: int
    body: str
    headers: dict[str, str]
    location: str | None


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Client:
    """Cookies kept, redirects not followed (the tests look at them), forms' tokens read from pages."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def send(self, path: str, form: dict[str, str] | list[tuple[str, str]] | None = None,
             headers: dict[str, str] | None = None) -> Reply:
        data = None if form is None else urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(request, timeout=30) as response:
                return Reply(response.status, response.read().decode(), dict(response.headers),
                             response.headers.get("Location"))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.read().decode(), dict(exc.headers), exc.headers.get("Location"))

    def get(self, path: str) -> Reply:
        return self.send(path)

    def token(self, path: str) -> str:
        page = self.get(path).body
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def login(self, user: tuple[str, str]) -> Reply:
        token = self.token("/console/login")
        return self.send("/console/login", {"csrf": token, "username": user[0], "password": user[1],
                                            "next": "/console/"}, {"Origin": self.base})

    def post(self, path: str, form: list[tuple[str, str]], page: str) -> Reply:
        """A form as a browser sends it: with the token of the page it was on, from this origin."""
        return self.send(path, [("csrf", self.token(page)), *form], {"Origin": self.base})


def text_of(page: str) -> str:
    """Roughly what a person reads: tags gone, entities decoded, spaces collapsed."""
    import html

    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))
