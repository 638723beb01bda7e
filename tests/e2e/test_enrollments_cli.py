"""`playbookd enrollments list|show|exit`, as an operator uses them on a project made by `init`."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import json_lines, playbookd


def test_list_show_and_exit_an_enrollment(tmp_path: Path) -> None:
    assert playbookd("init", "project", "--accounts", "60", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    assert playbookd("run", "--once", cwd=project).returncode == 0
    listed = json_lines(playbookd("enrollments", "list", "--state", "active", "--format", "json", cwd=project).stdout)
    assert listed and {row["state"] for row in listed} == {"active"}
    chosen = listed[0]
    shown = playbookd("enrollments", "show", str(chosen["id"]), cwd=project).stdout
    assert f"account: {chosen['account']}" in shown and "state: active" in shown and "entered" in shown

    ended = playbookd("enrollments", "exit", str(chosen["id"]), "--note", "handled by phone", cwd=project)
    assert ended.stdout.strip() == "ended 1 enrollment(s)"
    (row,) = [r for r in json_lines(playbookd("enrollments", "list", "--account", chosen["account"],
                                               "--playbook", chosen["playbook"], "--format", "json",
                                               cwd=project).stdout)]
    assert (row["state"], row["reason"]) == ("exited", "ended by an operator: handled by phone")
    table = playbookd("enrollments", "list", "--state", "exited", cwd=project).stdout
    assert table.splitlines()[0].split()[:4] == ["ID", "PLAYBOOK", "ACCOUNT", "STATE"]

    again = playbookd("enrollments", "exit", str(chosen["id"]), "999999", "--note", "x", cwd=project)
    assert again.returncode == 1
    assert f"enrollment {chosen['id']}: is exited already" in again.stderr
    assert "enrollment 999999: no such enrollment" in again.stderr
    assert playbookd("enrollments", "show", "999999", cwd=project).returncode == 1
