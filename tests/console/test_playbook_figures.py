"""The playbook pages' figures on a project where every playbook is read from its snapshot
(report.live_under: 0): the numbers of `playbookd report` at the moment the snapshot was taken, the
snapshot's age, and what the pages say before there is one."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cli_helpers import edit_config, playbookd
from console_helpers import VIEWER, Client, copy_project, loaded, make_project, text_of
from http_helpers import serving
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine

from playbookd.console.app import Console
from playbookd.console.playbook_data import ago
from playbookd.console.views import mount
from playbookd.report.results import Scope, report
from playbookd.service import http
from playbookd.store.database import utcnow
from playbookd.store.schema import enrollments, report_snapshots

SECRET = b"console-test-secret"


@pytest.fixture(scope="module")
def template_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project(tmp_path_factory.mktemp("figures"))  # its run --once stored the snapshots
    edit_config(project, report={"live_under": 0})
    return project


@pytest.fixture
def project(template_project: Path, tmp_path: Path) -> Path:
    return copy_project(template_project, tmp_path / "project")


@pytest.fixture
def served(project: Path) -> Iterator[tuple[Client, Engine]]:
    rt, engine = loaded(project)
    assert isinstance(engine, Engine)
    site = http.Site(engine, SECRET, "Acme", lambda: http.health(engine),
                     console=mount(Console(engine, lambda: rt, SECRET)))
    with serving(site) as url:
        client = Client(url)
        client.login(VIEWER)
        yield client, engine


def totals(client: Client, playbook: str) -> dict[str, str]:
    body = client.get(f"/console/playbooks/{playbook}?csv=report").body
    return {r["measure"]: r["value"] for r in csv.DictReader(io.StringIO(body))}


def busiest(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(enrollments.c.playbook_id).group_by(enrollments.c.playbook_id)
                                .order_by(enrollments.c.playbook_id).limit(1)).scalar_one())


def test_the_page_shows_the_report_of_the_snapshot_until_the_next_refresh(served: tuple[Client, Engine],
                                                                         project: Path) -> None:
    client, engine = served
    playbook = busiest(engine)
    result = report(engine, Scope(playbook=playbook))[0]
    assert totals(client, playbook)["entered"] == str(result.entered)
    with engine.begin() as conn:  # something happens after the snapshot was taken
        conn.execute(update(enrollments).where(enrollments.c.playbook_id == playbook).values(state="exited",
                                                                                          reason="by hand"))
    shown = totals(client, playbook)
    assert "exited: by hand" not in shown and shown["entered"] == str(result.entered)
    assert {k: int(v) for k, v in shown.items() if k.startswith("state ")} == {
        f"state {k}": v for k, v in result.states.items()}
    refreshed = playbookd("report", "--refresh", "--playbook", playbook, cwd=project)
    assert refreshed.returncode == 0, refreshed.stderr
    assert "report figures: refreshed 1 playbook(s)" in refreshed.stdout
    assert totals(client, playbook)["exited: by hand"] == str(result.entered)
    unknown = playbookd("report", "--refresh", "--playbook", "nope", cwd=project)
    assert unknown.returncode != 0 and "no playbook 'nope'" in unknown.stderr
    mixed = playbookd("report", "--refresh", "--since", "2026-01-01", cwd=project)
    assert mixed.returncode == 2 and "--refresh" in mixed.stderr


def test_the_page_and_the_list_say_how_old_the_figures_are(served: tuple[Client, Engine]) -> None:
    client, engine = served
    playbook = busiest(engine)
    taken = utcnow() - timedelta(minutes=90)
    # a time of another day is shown with its date
    shown = taken.strftime("%H:%M UTC" if taken.date() == utcnow().date() else "%Y-%m-%d %H:%M UTC")
    with engine.begin() as conn:
        conn.execute(update(report_snapshots).where(report_snapshots.c.playbook_id == playbook)
                     .values(computed_at=taken))
    page = text_of(client.get(f"/console/playbooks/{playbook}").body)
    assert f"Figures as of {shown} (90 min ago)" in page
    assert "recomputes them every 5min" in page
    listed = client.get("/console/playbooks?csv=playbooks").body
    row = next(r for r in csv.DictReader(io.StringIO(listed)) if r["playbook"] == playbook)
    assert row["figures"] == f"as of {shown} (90 min ago)"


def test_before_the_first_refresh_the_pages_say_the_figures_are_not_computed_yet(
        served: tuple[Client, Engine]) -> None:
    client, engine = served
    playbook = busiest(engine)
    with engine.begin() as conn:
        conn.execute(delete(report_snapshots))
    answer = client.get(f"/console/playbooks/{playbook}")
    assert answer.status == 200
    page = text_of(answer.body)
    assert "Figures not computed yet" in page and f"playbookd report --refresh --playbook {playbook}" in page
    assert "YAML" in page  # the rest of the page is there
    listed = client.get("/console/playbooks?csv=playbooks").body
    row = next(r for r in csv.DictReader(io.StringIO(listed)) if r["playbook"] == playbook)
    assert (row["entered"], row["figures"]) == ("'-", "not computed yet")


def test_ages_read_as_a_person_says_them() -> None:
    assert [ago(timedelta(seconds=s)) for s in (5, 60, 119 * 60, 3 * 3600, 3 * 86400)] == [
        "under a minute ago", "1 min ago", "119 min ago", "3 h ago", "3 days ago"]
