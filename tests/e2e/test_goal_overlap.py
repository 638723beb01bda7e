"""`validate` warns when synced accounts match a playbook's trigger and its goal together: they would
enter with the goal already met, which never counts as a conversion."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import playbookd, small_project

ACCOUNTS = ("id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n"
            "ACC-1,A,5000,active,basic,adopted,m@acme.example\n"
            "ACC-2,B,5000,active,pro,adopted,m@acme.example\n")
CONTACTS = ("account_id,email,first_name,role,status,is_primary\nACC-1,a@x.example,Ana,admin,active,true\n"
            "ACC-2,b@x.example,Bo,admin,active,true\n")
UPGRADE = """\
id: upgrade
trigger: {when: {status: active}}
steps:
  - email: {template: login_nudge, to: admin}
goal:
  within: 30d
  when: {plan: pro}
"""


def test_a_goal_the_trigger_does_not_rule_out_is_a_warning_at_the_goal(tmp_path: Path) -> None:
    project = small_project(tmp_path, ACCOUNTS, CONTACTS, {"upgrade": UPGRADE})
    assert playbookd("sync", cwd=project).returncode == 0
    result = playbookd("validate", cwd=project)
    assert result.returncode == 0, result.stderr
    playbook = project / "playbooks" / "upgrade.yaml"
    goals = [line for line in result.stderr.splitlines() if ": goal: " in line]  # config.yaml's own aside
    assert goals == [
        f"warning: {playbook}:7:9: goal: 1 synced account(s) match the trigger and the goal together (e.g. ACC-2); "
        "they would enter with the goal already met, which is never a conversion: make the goal something the "
        "trigger rules out"]
    playbook.write_text(UPGRADE.replace("{status: active}", "{plan: basic}"))
    clean = playbookd("validate", cwd=project)
    assert clean.returncode == 0 and ": goal: " not in clean.stderr and "warning" in clean.stderr
