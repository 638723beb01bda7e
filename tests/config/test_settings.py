from pathlib import Path

import pytest

from playbookd.config.settings import describe_settings, expand_env, load_config
from playbookd.errors import UserError, ValidationError

MINIMAL = 'company: {name: Acme, postal_address: "1 Main St"}\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_and_relative_paths(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.playbooks == tmp_path / "playbooks"
    assert config.database == f"sqlite:///{tmp_path}/playbookd.db"
    assert config.delivery.transport == "file"
    assert config.delivery.frequency_cap is None and config.delivery.quiet_hours is None


def test_unknown_keys_and_wrong_types_are_located_with_hints(tmp_path):
    path = write(tmp_path, MINIMAL + "delivery:\n  transprt: smtp\n  rate_per_second: fast\nschedular: {}\n")
    with pytest.raises(ValidationError) as info:
        load_config(path)
    text = str(info.value)
    assert "unknown key 'delivery.transprt'; did you mean 'transport'?" in text
    assert f"{path}:4:" in text and "rate_per_second" in text
    assert "unknown key 'schedular'; did you mean 'scheduler'?" in text


def test_environment_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("PB_HOST", "mail.example")
    monkeypatch.delenv("PB_UNSET", raising=False)
    config = load_config(write(tmp_path, MINIMAL + "delivery:\n  smtp: {host: '${PB_HOST}', password: '${PB_UNSET}',"
                                                   " username: '${PB_UNSET:-bob}'}\n"))
    assert config.delivery.smtp.host == "mail.example"
    assert config.delivery.smtp.password is None
    assert config.delivery.smtp.username == "bob"
    assert expand_env({"a": ["x${PB_HOST}y"]}) == {"a": ["xmail.exampley"]}


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ValidationError, match=r"config.yaml:2:\d+: invalid YAML"):
        load_config(write(tmp_path, "company: {name: Acme\nx: [\n"))


def test_bad_duration_and_timezone(tmp_path):
    with pytest.raises(ValidationError) as info:
        load_config(write(tmp_path, MINIMAL + "timezone: Mars/Olympus\nscheduler: {evaluate_every: soon}\n"))
    assert "unknown time zone" in str(info.value) and "bad duration 'soon'" in str(info.value)


def test_settings_are_described():
    keys = {k for k, _, _ in describe_settings()}
    assert {"database", "delivery.transport", "delivery.smtp.port", "scheduler.evaluate_every"} <= keys


def test_settings_inside_optional_and_list_settings_are_described() -> None:
    rows = {k: (default, help_) for k, default, help_ in describe_settings()}
    assert rows["delivery.frequency_cap"] == ("", "Unset: no cap")
    assert rows["delivery.frequency_cap.max_wait"][0] == "3d"
    assert rows["sources[].path"][1] == "File for csv and jsonl sources"
    assert rows["sources[].name"][0] == "(required)"
    assert rows["scheduler.evaluate_every"][0] == "15min"
    assert "path" not in rows, "where the config was loaded from is not a setting"


def test_tasks_fallback_assignee_per_segment_and_webhook(tmp_path):
    config = load_config(write(tmp_path, MINIMAL + "segments: [{name: high_touch, when: {arr: {gte: 100000}}}, "
                               "{name: tech_touch}]\ntasks:\n  fallback_assignee: {high_touch: leads@acme.example, "
                               "default: success@acme.example}\n  webhook: {url: 'https://crm.example/tasks'}\n"))
    assert config.tasks.fallback("high_touch") == "leads@acme.example"
    assert config.tasks.fallback("tech_touch") == config.tasks.fallback(None) == "success@acme.example"
    assert config.tasks.webhook is not None and config.tasks.webhook.url == "https://crm.example/tasks"
    assert load_config(write(tmp_path, MINIMAL)).tasks.fallback("tech_touch") is None


def test_bad_tasks_settings_are_located(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM_URL", raising=False)
    path = write(tmp_path, MINIMAL + "segments: [{name: high_touch, when: {arr: {gte: 100000}}}, {name: tech_touch}]\n"
                 "tasks:\n  fallback_assignee: {hightouch: leads@acme.example}\n")
    with pytest.raises(ValidationError) as info:
        load_config(path)
    assert f"{path}:4:34: tasks.fallback_assignee: unknown segment 'hightouch'; did you mean 'high_touch'?" in str(
        info.value)
    for bad, why in (("fallback_assignee: {default: 'success team'}", "not an email address: default: 'success team'"),
                     ("webhook: {url: '${CRM_URL:-}/tasks'}", "is not an http(s) URL (is a variable unset?)"),
                     ("webhook: {uri: 'https://crm.example'}", "unknown key 'tasks.webhook.uri'; did you mean 'url'?")):
        with pytest.raises(ValidationError) as info:
            load_config(write(tmp_path, MINIMAL + f"tasks:\n  {bad}\n"))
        assert why in str(info.value), str(info.value)


@pytest.mark.parametrize(("bad", "why"), [
    ("receivers: [{url: 'https://crm.example', headers: {Content-Type: text/plain}}]",
     "header 'Content-Type' is set by playbookd and cannot be configured"),
    ("receivers: [{url: 'https://crm.example', headers: {X-Token: \"a\\r\\nX-Evil: 1\"}}]",
     "header 'X-Token': the value must be one line of text"),
    ("receivers: [{url: 'https://crm.example', headers: {'Bad Name': x}}]",
     "header name 'Bad Name' is not a valid HTTP field name"),
    ("receivers: [{url: 'https://crm.example', secret: short}]", "a signing secret needs at least 16 characters"),
])
def test_bad_webhook_credentials_are_refused_where_they_are(tmp_path, bad, why):
    path = write(tmp_path, MINIMAL + f"webhooks:\n  {bad}\n")
    with pytest.raises(ValidationError) as info:
        load_config(path)
    assert f"{path}:3:" in str(info.value) and why in str(info.value), str(info.value)
