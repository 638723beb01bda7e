from pathlib import Path

from playbookd.config.durations import Months
from playbookd.model.conditions import FieldTypes
from playbookd.model.fields import ACCOUNT_FIELDS, DERIVED_FIELDS
from playbookd.model.playbooks import Context, load_playbooks
from playbookd.model.steps import EmailStep, SetStep, TaskStep, WaitStep

CTX = Context(FieldTypes({**ACCOUNT_FIELDS, **DERIVED_FIELDS}), ("high_touch", "low_touch", "tech_touch"))

DESIGN_EXAMPLE = """\
id: no-login-7d
name: Re-engage accounts with no login in 7 days
enabled: true
audience:
  segments: [tech_touch, low_touch]
trigger:
  when:
    all:
      - last_login_at: {older_than: 7d}
      - lifecycle_stage: {in: [onboarding, adopted]}
      - not: {status: churned}
reenter_after: 30d
exit_when:
  last_login_at: {within_last: 1d}
steps:
  - email: {template: login_nudge, to: admin}
  - wait: 3d
  - email:
      to: admin
      variants:
        short: {template: login_nudge_short, weight: 50}
        long:  {template: login_nudge_long,  weight: 50}
  - wait: 4d
  - task: {title: "{{ account.name }} still inactive", assign: csm, due_in: 2d}
  - webhook: {url: "${SLACK_WEBHOOK}", body: {text: "{{ account.name }} inactive"}}
  - set: {risk_flag: inactive}
goal:
  when: {last_login_at: {within_last: 7d}}
  within: 14d
"""


def load(tmp_path: Path, **files: str):
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    return load_playbooks(tmp_path, CTX)


def test_design_example_parses(tmp_path):
    playbooks, problems = load(tmp_path, a=DESIGN_EXAMPLE)
    assert problems == []
    (pb,) = playbooks
    assert pb.id == "no-login-7d" and pb.segments == ("tech_touch", "low_touch")
    assert pb.reenter_after == 30 * 86400 and pb.goal is not None and pb.goal.within == 14 * 86400
    kinds = [type(s) for s in pb.steps]
    assert kinds[:5] == [EmailStep, WaitStep, EmailStep, WaitStep, TaskStep] and kinds[-1] is SetStep
    variants = pb.steps[2].variants
    assert [(v.name, v.template, v.weight) for v in variants] == [
        ("short", "login_nudge_short", 50), ("long", "login_nudge_long", 50)]
    assert sorted(name for name, _ in pb.templates()) == ["login_nudge", "login_nudge_long", "login_nudge_short"]


def test_id_defaults_to_file_stem(tmp_path):
    playbooks, problems = load(tmp_path, welcome="trigger: {when: {status: active}}\nsteps: [{wait: 1d}]\n")
    assert problems == [] and playbooks[0].id == "welcome"


def test_every_problem_in_every_file_is_reported(tmp_path):
    bad = """\
id: broken
audience: {segments: [tech_tuch]}
trigger:
  when: {last_login: {older_than: 7d}}
reenter_after: 30 days
steps:
  - email: {template: x, to: admins}
  - wiat: 3d
  - task: {title: t, assign: nobody}
colour: blue
"""
    playbooks, problems = load(tmp_path, broken=bad, syntax="id: [unclosed\n")
    assert [p.id for p in playbooks] == ["broken"]  # returned so its templates are checked too
    messages = [str(p) for p in problems]
    expected = [
        ("broken.yaml:2:", "unknown segment 'tech_tuch'; did you mean 'tech_touch'?"),
        ("broken.yaml:4:", "unknown field 'last_login'"),
        ("broken.yaml:5:", "bad duration '30 days'"),
        ("broken.yaml:7:", "unknown recipient role 'admins'; did you mean 'admin'?"),
        ("broken.yaml:8:", "unknown step 'wiat'; did you mean 'wait'?"),
        ("broken.yaml:9:", "'assign' is csm"),
        ("broken.yaml:10:", "unknown key 'colour'"),
        ("syntax.yaml:", "invalid YAML"),
    ]
    for where, what in expected:
        assert any(where in m and what in m for m in messages), (where, what, messages)


def test_duplicate_ids_and_keys(tmp_path):
    body = "trigger: {when: {status: active}}\nsteps: [{wait: 1d}]\n"
    _, problems = load(tmp_path, a="id: same\n" + body, b="id: same\n" + body,
                       c="id: c\nid: d\n" + body)
    messages = [str(p) for p in problems]
    assert any("duplicate playbook id 'same'" in m for m in messages)
    assert any("c.yaml:2:1: duplicate key 'id'" in m for m in messages)


def test_event_trigger_allows_event_fields(tmp_path):
    text = "trigger: {event: nps_response, when: {event.score: {lte: 6}}}\nsteps: [{wait: 1d}]\n"
    playbooks, problems = load(tmp_path, nps=text)
    assert problems == [] and playbooks[0].event == "nps_response"
    _, problems = load(tmp_path, nps="trigger: {when: {event.score: {lte: 6}}}\nsteps: [{wait: 1d}]\n")
    assert "unknown field 'event.score'" in problems[0].message


def test_calendar_durations_and_the_ambiguous_m(tmp_path):
    text = DESIGN_EXAMPLE.replace("reenter_after: 30d", "reenter_after: 3mo").replace("within: 14d", "within: 1y")
    ok = text.replace("  - wait: 3d\n", "  - wait: 1mo\n", 1)
    playbooks, problems = load(tmp_path, a=ok)
    assert problems == []
    (pb,) = playbooks
    assert pb.reenter_after == Months(3) and pb.goal.within == Months(12) and pb.steps[1].span == Months(1)
    (tmp_path / "a.yaml").unlink()
    _, problems = load(tmp_path, b=text.replace("reenter_after: 3mo", "reenter_after: 3m"))
    assert [str(p) for p in problems] == [f"{tmp_path / 'b.yaml'}:12:16: bad duration '3m': did you mean 3min or 3mo?"]


def test_step_ids_are_stable_and_explicit_ones_unique(tmp_path):
    (pb,), problems = load(tmp_path, a=DESIGN_EXAMPLE)
    assert problems == [] and len(set(pb.step_keys)) == len(pb.steps) == 7
    assert [key.split("-")[0] for key in pb.step_keys] == ["email", "wait", "email", "wait", "task", "webhook", "set"]
    again, _ = load(tmp_path, a=DESIGN_EXAMPLE)
    assert again[0].step_keys == pb.step_keys  # derived from content: the same file, the same keys
    twice = DESIGN_EXAMPLE.replace("  - wait: 3d\n", "  - id: pause\n    wait: 3d\n").replace(
        "  - wait: 4d\n", "  - id: pause\n    wait: 4d\n")
    (tmp_path / "a.yaml").unlink()
    _, problems = load(tmp_path, b=twice)
    assert [p.message for p in problems] == ["step id 'pause' is used 2 times"] * 2


def test_step_tokens_are_the_keys_when_plain_else_a_digest(tmp_path):
    named = DESIGN_EXAMPLE.replace("  - wait: 3d\n", "  - id: pause\n    wait: 3d\n").replace(
        "  - wait: 4d\n", "  - id: \"Zweite Pause: lang\"\n    wait: 4d\n").replace(
        "  - set: {risk_flag: inactive}\n", f"  - id: {'x' * 65}\n    set: {{risk_flag: inactive}}\n")
    (pb,), problems = load(tmp_path, a=named)
    assert problems == []
    tokens = [pb.step_token(i) for i in range(len(pb.steps))]
    assert tokens[0] == pb.step_keys[0] and tokens[1] == "pause"  # derived keys and plain ids as they are
    assert tokens[3].startswith("h-") and tokens[6].startswith("h-") and tokens[3] != tokens[6]
    assert all(len(t) <= 64 and ":" not in t for t in tokens) and len(set(tokens)) == len(tokens)
    assert pb.step_token(len(pb.steps)) == f"#{len(pb.steps)}"
