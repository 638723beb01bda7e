"""`validate` warns about text a playbook compares with that no synced account holds."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import playbookd

TYPOS = """\
id: typos
trigger:
  when:
    all:
      - status: Active
      - lifecycle_stage: {in: [onbording, adopted]}
      - health_color: {changed_to: rde}
steps:
  - task: {title: "{{ account.name }}", assign: csm}
"""


def test_unseen_values_are_warnings_and_strict_makes_them_problems(tmp_path: Path) -> None:
    assert playbookd("init", "project", "--accounts", "40", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    playbook = project / "playbooks" / "typos.yaml"
    playbook.write_text(TYPOS)
    fresh = playbookd("validate", cwd=project)  # no store yet: nothing to compare with
    assert fresh.returncode == 0 and "warning" not in fresh.stderr
    assert playbookd("sync", cwd=project).returncode == 0
    result = playbookd("validate", cwd=project)
    assert result.returncode == 0 and result.stdout.startswith("ok: ")
    assert result.stderr.splitlines() == [
        f"warning: {playbook}:5:17: status: 'Active' is in no synced account; did you mean 'active'?",
        f"warning: {playbook}:6:31: lifecycle_stage: 'onbording' is in no synced account; "
        "did you mean 'onboarding'?",
        f"warning: {playbook}:7:36: health_color: 'rde' is not a health colour; did you mean 'red'?",
    ]
    strict = playbookd("validate", "--strict", cwd=project)
    assert strict.returncode == 1 and "validation failed (--strict: warnings count) (3 problem(s))" in strict.stderr
    playbook.write_text(TYPOS.replace("Active", "active").replace("onbording", "onboarding").replace("rde", "red"))
    clean = playbookd("validate", "--strict", cwd=project)
    assert clean.returncode == 0 and clean.stderr == ""
