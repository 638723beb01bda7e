"""A step that cannot run stops its enrollment in `failed`, with the error in `run --once`'s exit code,
`status` and `history`; other accounts go on; after the fix, `enrollments retry` runs it again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cli_helpers import edit_config, playbookd

SEATS = ("---\nsubject: \"Your seats at {{ account.name }}\"\n---\n{% extends \"_layouts/base.html.j2\" %}\n"
         "{% block body %}<p>{% if account.seats_used is not none and account.seats_purchased is not none %}"
         "Your team uses {{ account.seats_used * 100 // account.seats_purchased }}% of its seats."
         "{% endif %}</p>{% endblock %}\n")
PLAYBOOK = "id: seat-note\ntrigger: {when: {arr: {gt: 0}}}\nsteps:\n  - email: {template: seat_note, to: admin}\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert playbookd("init", "project", "--accounts", "30", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    for playbook in (project / "playbooks").iterdir():
        playbook.unlink()
    (project / "playbooks" / "seat-note.yaml").write_text(PLAYBOOK)
    (project / "email_templates" / "default" / "seat_note.html.j2").write_text(SEATS)
    edit_config(project, exit_when=None)
    accounts = project / "data" / "accounts.csv"
    lines = accounts.read_text().splitlines()
    column = lines[0].split(",").index("seats_purchased")
    for number in range(1, len(lines), 3):  # a third of the accounts have no seats yet: division by zero
        cells = lines[number].split(",")
        cells[column] = "0"
        lines[number] = ",".join(cells)
    accounts.write_text("\n".join(lines) + "\n")
    return project


def states(project: Path) -> dict[str, int]:
    with sqlite3.connect(project / "playbookd.db") as conn:
        return dict(conn.execute("SELECT state, count(*) FROM enrollments GROUP BY state").fetchall())


def test_a_template_error_fails_the_enrollment_visibly_and_a_retry_runs_it_again(project: Path) -> None:
    assert playbookd("validate", cwd=project).returncode == 0  # the sample accounts all have seats
    first = playbookd("run", "--once", cwd=project)
    assert first.returncode == 1
    assert "enrollment(s) stopped at a step that could not run" in first.stderr
    failed, completed = states(project)["failed"], states(project)["completed"]
    assert failed > 0 and completed > 0  # accounts without seats fail; the others got their email
    status = playbookd("status", cwd=project).stdout
    assert "Enrollments stopped at a step" in status and "ZeroDivisionError" in status
    with sqlite3.connect(project / "playbookd.db") as conn:
        account, error = conn.execute("SELECT account_id, reason FROM enrollments WHERE state = 'failed'").fetchone()
        queued = conn.execute("SELECT count(*) FROM outbox WHERE account_id = ?", (account,)).fetchone()[0]
    assert error.startswith("email step 1: ") and queued == 0
    history = playbookd("history", "--account", account, cwd=project).stdout
    assert "step_failed" in history and "ZeroDivisionError" in history

    rehearsal = playbookd("validate", cwd=project)  # now the store has the accounts it fails for
    assert rehearsal.returncode == 1 and "templates fail for synced accounts" in rehearsal.stderr
    assert "seat_note.html.j2:5: for account ACC-" in rehearsal.stderr and "ZeroDivisionError" in rehearsal.stderr

    again = playbookd("run", "--once", cwd=project)  # nothing retries by itself, and nothing re-enters
    assert states(project)["failed"] == failed and again.returncode == 0, again.stderr

    fixed = SEATS.replace("// account.seats_purchased", "// (account.seats_purchased or 1)")
    (project / "email_templates" / "default" / "seat_note.html.j2").write_text(fixed)
    retried = playbookd("enrollments", "retry", "--playbook", "seat-note", cwd=project)
    assert retried.stdout.strip() == f"retrying {failed} enrollment(s)"
    assert playbookd("run", "--once", cwd=project).returncode == 0
    assert states(project) == {"completed": failed + completed}


def test_retry_refuses_what_is_not_a_failed_enrollment(project: Path) -> None:
    assert playbookd("run", "--once", cwd=project).returncode == 1
    with sqlite3.connect(project / "playbookd.db") as conn:
        (done,) = conn.execute("SELECT id FROM enrollments WHERE state = 'completed' LIMIT 1").fetchone()
    result = playbookd("enrollments", "retry", str(done), "999999", cwd=project)
    assert result.returncode == 1
    assert "enrollment 999999: no such enrollment" in result.stderr
    assert f"enrollment {done}: is completed" in result.stderr
    assert playbookd("enrollments", "retry", cwd=project).returncode == 2
