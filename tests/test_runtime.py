"""Loading everything together: inline templates (task titles, webhook bodies) are validated too."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import small_project
from cycle_helpers import ACCOUNTS, CONTACTS

from playbookd import runtime
from playbookd.config.settings import load_config

EVENT_PLAYBOOK = """\
id: detractor
trigger: {event: nps_response, when: {event.score: {lte: 6}}}
steps:
  - task: {title: "Call {{ account.nme }} about their {{ event.score }}", assign: csm}
  - webhook:
      url: http://127.0.0.1:9/hook
      body: {text: "{{ account.name }} scored {{ event.score }}", tags: ["{{ acount.plan }}"]}
"""


def problems(tmp_path: Path, playbook: str) -> list[str]:
    project = small_project(tmp_path, ACCOUNTS, CONTACTS, {"detractor": playbook})
    _, found = runtime.build(load_config(project / "config.yaml"), None)
    return [f"{Path(p.file).name}:{p.line}:{p.col}: {p.message}" for p in found]


def test_typos_in_task_titles_and_webhook_bodies_are_found_where_they_are(tmp_path: Path) -> None:
    assert problems(tmp_path, EVENT_PLAYBOOK) == [
        "detractor.yaml:4:11: task step: undefined variable 'account.nme' ('dict object' has no attribute 'nme')",
        "detractor.yaml:6:7: webhook step: undefined variable 'acount'",
    ]


def test_event_data_of_any_shape_is_accepted(tmp_path: Path) -> None:
    fixed = EVENT_PLAYBOOK.replace("account.nme", "account.name").replace("acount.plan", "account.plan")
    assert problems(tmp_path, fixed) == []


FIT = """\
id: watermelon
trigger: {when: {all: [{usage_fit: {in: [no, investigate]}}, {advocacy: {exists: false}}]}}
steps:
  - set: {advocacy: "{{ account.name }} to ask", asked_at: "{{ now }}"}
  - task: {title: "{{ account.name }}: {{ account.usage_fit }} since {{ account.asked_at }}", assign: csm}
"""


def test_declared_and_playbook_written_fields_are_known_on_an_empty_store(tmp_path: Path) -> None:
    project = small_project(tmp_path, ACCOUNTS, CONTACTS, {"watermelon": FIT}, custom_fields={"usage_fit": "string"})
    loaded, found = runtime.build(load_config(project / "config.yaml"), None)
    assert found == []
    assert loaded.types["usage_fit"] == "string" and "advocacy" in loaded.types


def test_a_set_value_is_validated_as_a_template(tmp_path: Path) -> None:
    broken = FIT.replace("{{ now }}", "{{ nwo }}")
    found = problems_of(tmp_path, broken, custom_fields={"usage_fit": "string"})
    assert found == ["watermelon.yaml:4:10: set step: undefined variable 'nwo'"]


def problems_of(tmp_path: Path, playbook: str, **config: object) -> list[str]:
    project = small_project(tmp_path, ACCOUNTS, CONTACTS, {"watermelon": playbook}, **config)
    _, found = runtime.build(load_config(project / "config.yaml"), None)
    return [f"{Path(p.file).name}:{p.line}:{p.col}: {p.message}" for p in found]
