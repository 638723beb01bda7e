"""The real daemon measures a goal as it becomes true between steps, and the report counts it, on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Daemon, json_lines, playbookd, small_project
from sqlalchemy import select

from playbookd.store.database import connect
from playbookd.store.schema import enrollments

HEADER = "id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n"
CONTACTS = "account_id,email,first_name,role,status,is_primary\n" + "".join(
    f"ACC-{i},ana{i}@harbor.example,Ana,admin,active,true\n" for i in range(1, 4))
NUDGE = """\
id: nudge
trigger: {when: {status: active}}
steps:
  - email: {template: login_nudge, to: admin}
  - wait: 3d
  - email: {template: login_nudge_short, to: admin}
goal: {when: {plan: pro}, within: 30d}
"""


def accounts(pro: set[int]) -> str:
    return HEADER + "".join(f"ACC-{i},Account {i},5000,active,{'pro' if i in pro else 'basic'},adopted,"
                            "m@acme.example\n" for i in range(1, 4))


@pytest.fixture
def project(tmp_path: Path, db_url: str) -> Iterator[tuple[Path, str]]:
    path = small_project(tmp_path, accounts(set()), CONTACTS, {"nudge": NUDGE}, database=db_url,
                         scheduler={"evaluate_every": "1s", "sync_every": "1s", "deliver_every": "1s"},
                         http={"listen": "127.0.0.1:0"}, logging={"format": "json", "level": "info"})
    yield path, db_url


def test_the_daemon_measures_a_goal_between_steps(project: tuple[Path, str]) -> None:
    path, url = project
    engine = connect(url)

    def goals() -> dict[str, object]:
        with engine.connect() as conn:
            return {r.account_id: r.goal_met_at for r in conn.execute(select(enrollments))}

    daemon = Daemon(path)
    try:
        daemon.wait_for("three enrollments", lambda: len(goals()) == 3)
        (path / "data" / "accounts.csv").write_text(accounts({2}))
        daemon.wait_for("the goal of ACC-2", lambda: goals().get("ACC-2") is not None)
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
    found = goals()
    engine.dispose()
    assert found["ACC-1"] is None and found["ACC-3"] is None
    (line,) = json_lines(playbookd("report", "--format", "json", cwd=path).stdout)
    assert line["goal"]["met"] == 1 and line["exited"] == {"goal met": 1} and line["active"] == 2
    assert line["groups"] == [{**line["groups"][0], "name": "treatment", "entered": 3, "goal_met": 1}]
