"""`matches` against synced data: a pattern that backtracks in Python's re finishes `run --once` with
the right enrollments (SQLite and PostgreSQL); one RE2 cannot run is refused at validate."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import playbookd, small_project
from sqlalchemy import create_engine, select

from playbookd.store.schema import enrollments

ACCOUNTS = ("id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n"
            f"ACC-1,{'a' * 40}b,5000,active,basic,adopted,maria@acme.example\n"
            f"ACC-2,{'a' * 40},5000,active,basic,adopted,maria@acme.example\n")
CONTACTS = ("account_id,email,first_name,role,status,is_primary\n"
            "ACC-1,ana@one.example,Ana,admin,active,true\nACC-2,bo@two.example,Bo,admin,active,true\n")
MATCHES = ('id: all-a\ntrigger: {when: {name: {matches: "^(a+)+$"}}}\n'
           'steps:\n  - task: {title: "{{ account.id }} is all a", assign: csm}\n')


def test_a_backtracking_pattern_against_synced_names_finishes(tmp_path: Path, db_url: str) -> None:
    project = small_project(tmp_path, ACCOUNTS, CONTACTS, {"all-a": MATCHES}, database=db_url, exit_when=None)
    result = playbookd("run", "--once", cwd=project, timeout=120)  # Python's re: about 2**40 steps for ACC-1
    assert result.returncode == 0, result.stderr
    engine = create_engine(db_url)
    with engine.connect() as conn:
        entered = [row.account_id for row in conn.execute(select(enrollments.c.account_id))]
    engine.dispose()
    assert entered == ["ACC-2"]


def test_a_pattern_re2_cannot_run_is_refused_at_validate_with_its_place(tmp_path: Path) -> None:
    lookahead = MATCHES.replace("^(a+)+$", "^(?=a)a")
    project = small_project(tmp_path, ACCOUNTS, CONTACTS, {"all-a": lookahead})
    result = playbookd("validate", cwd=project)
    assert result.returncode == 1
    assert "all-a.yaml:2:" in result.stderr and "no backreferences or lookaround" in result.stderr
