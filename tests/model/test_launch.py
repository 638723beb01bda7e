"""A playbook's status and launch settings: parsed, refused where wrong, and the old `enabled:`."""

from __future__ import annotations

from pathlib import Path

import pytest

from playbookd.model.conditions import FieldTypes
from playbookd.model.fields import ACCOUNT_FIELDS, DERIVED_FIELDS
from playbookd.model.launch import Launch, declared, deprecations
from playbookd.model.playbooks import Context, load_playbooks

CTX = Context(FieldTypes({**ACCOUNT_FIELDS, **DERIVED_FIELDS}), ("tech_touch",))
BODY = "trigger: {when: {status: active}}\nsteps: [{wait: 1d}]\n"


def load(tmp_path: Path, head: str) -> tuple[list, list[str]]:
    (tmp_path / "p.yaml").write_text(head + BODY)
    playbooks, problems = load_playbooks(tmp_path, CTX)
    return playbooks, [str(p) for p in problems]


@pytest.mark.parametrize(("head", "status"), [
    ("", "live"), ("status: draft\n", "draft"), ("status: live\n", "live"), ("status: paused\n", "paused"),
    ("status: retired\n", "retired"), ("enabled: true\n", "live"), ("enabled: false\n", "retired"),
])
def test_status_and_its_older_form(tmp_path: Path, head: str, status: str) -> None:
    (playbook,), problems = load(tmp_path, head)
    assert problems == [] and playbook.status == status


def test_enabled_next_to_status_is_refused_where_it_stands(tmp_path: Path) -> None:
    _, problems = load(tmp_path, "id: p\nstatus: live\nenabled: false\n")
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'p.yaml'}:3:10: 'enabled' and 'status' together")
    assert "status: retired" in problems[0]


def test_an_unknown_status_is_located_with_a_hint(tmp_path: Path) -> None:
    _, problems = load(tmp_path, "id: p\nstatus: drafted\n")
    assert problems == [f"{tmp_path / 'p.yaml'}:2:9: 'status' is one of draft, live, paused, retired, not "
                        "'drafted'; did you mean 'draft'?"]


def test_launch_settings(tmp_path: Path) -> None:
    (playbook,), problems = load(tmp_path, "launch: {max_new_per_day: 200, warn_over: 1000}\n")
    assert problems == [] and playbook.launch == Launch(200, 1000) and playbook.launch.ramped
    (plain,), _ = load(tmp_path, "")
    assert plain.launch == Launch() and not plain.launch.ramped


@pytest.mark.parametrize(("head", "where", "why"), [
    ("launch: {max_new_per_day: 0}\n", "1:27", "'max_new_per_day' is a whole number, 1 or more"),
    ("launch: {warn_over: lots}\n", "1:21", "'warn_over' is a whole number, 1 or more"),
    ("launch: {max_per_day: 5}\n", "1:23", "unknown key 'max_per_day'; did you mean 'max_new_per_day'?"),
    ("launch: 200\n", "1:9", "'launch' takes {max_new_per_day: N, warn_over: N}"),
    ("enabled: maybe\n", "1:10", "'enabled' is true or false"),
])
def test_bad_launch_settings_are_located(tmp_path: Path, head: str, where: str, why: str) -> None:
    _, problems = load(tmp_path, head)
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'p.yaml'}:{where}: {why}"), problems


def test_enabled_is_read_with_a_deprecation_warning(tmp_path: Path) -> None:
    (tmp_path / "old.yaml").write_text("enabled: false\n" + BODY)
    (tmp_path / "new.yaml").write_text("status: retired\n" + BODY)
    assert [str(p) for p in deprecations(tmp_path)] == [
        f"{tmp_path / 'old.yaml'}:1:10: 'enabled' is deprecated: write 'status: retired' (statuses: draft, live, "
        "paused, retired)"]


def test_declared_reads_status_even_when_the_rest_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("id: b\nstatus: paused\nlaunch: {max_new_per_day: 5}\ntrigger: nonsense\n")
    (item,) = declared(tmp_path)
    assert (item.id, item.status, item.launch.max_new_per_day) == ("b", "paused", 5)
